"""From the workers' reports to the bench's numbers and the README's table (no timing here: pure functions).

Each implementation's row is the median of all its timed epochs over all rounds, with the min-max and
the interquartile range. A ratio gpunn/peer is computed per round (gpunn's median epoch in that round over
the peer's, both measured within the same minute) and then summarised (median, min, max), so a slow spell
of a shared machine moves a ratio only when it falls between the two workers of one round.
"""

from __future__ import annotations

import numpy as np

OURS = "gpunn numpy"
NOT_MEASURED_GPU = "not measured (no GPU lent)"
# README rows: (label, CPU row, GPU row)
TABLE_ROWS = (
    ("gpunn: the `train_step` `gpunn train` runs, fed as its loop feeds it", "gpunn numpy", "gpunn cuda"),
    ("gpunn: `gpunn.train`'s whole epoch (recipe classic)", "gpunn train epoch", "gpunn train epoch cuda"),
    ("JAX jit (whole step in one compiled function, gather inside)", "jax jit cpu", "jax jit gpu"),
    ("PyTorch eager", "pytorch eager cpu", "pytorch eager cuda"),
    ("scikit-learn MLPClassifier (one `partial_fit` pass, sgd)", "sklearn MLPClassifier", None),
    ("classic from-scratch NumPy MLP (float64, weights-first)", "classic numpy (float64)", None),
)


def spread(values) -> dict:
    """median, min, max and the interquartile range of `values`."""
    a = np.asarray(values, dtype=float)
    q1, median, q3 = np.percentile(a, [25, 50, 75])
    return {
        "median": float(median),
        "min": float(a.min()),
        "max": float(a.max()),
        "q1": float(q1),
        "q3": float(q3),
    }


def round_medians(rounds: list[dict], name: str, key: str = "epochs_s") -> list[float | None]:
    """The median of `name`'s timed epochs (or its `key` list) in each round; None where it did not run."""
    return [float(np.median(r[name][key])) if name in r else None for r in rounds]


def ratios(numerators: list[float | None], denominators: list[float | None]) -> dict | None:
    """Per-round ratios of two series (rounds where both ran), summarised; None when no round has both."""
    per_round = [
        a / b for a, b in zip(numerators, denominators, strict=True) if a is not None and b is not None
    ]
    if not per_round:
        return None
    return {"per_round": per_round, **spread(per_round)}


def summarise(rounds: list[dict]) -> dict:
    """rows (each implementation's spread of epoch times), ratios (gpunn numpy over each peer, per round)
    and the roofline (gpunn numpy over its own GEMMs alone and over the sgemm-peak time of its GEMM FLOPs)."""
    names = list(dict.fromkeys(name for r in rounds for name in r))
    rows = {}
    for name in names:
        epochs = [t for r in rounds if name in r for t in r[name]["epochs_s"]]
        rows[name] = {"epoch_s": spread(epochs), "round_medians_s": round_medians(rounds, name)}
    ours = round_medians(rounds, OURS)
    summary = {"rows": rows, "ratios": {}}
    for name in names:
        if name != OURS:
            ratio = ratios(ours, round_medians(rounds, name))
            if ratio is not None:
                summary["ratios"][f"{OURS} / {name}"] = ratio
    if any(OURS in r for r in rounds):
        gemms = round_medians(rounds, OURS, "own_gemms_epoch_s")
        peak_time = [
            r[OURS]["gemm_gflop_per_epoch"] / r[OURS]["sgemm_peak_gflops"] if OURS in r else None
            for r in rounds
        ]
        gflop = next(r[OURS]["gemm_gflop_per_epoch"] for r in rounds if OURS in r)
        summary["roofline"] = {
            "gemm_gflop_per_epoch": gflop,
            "own_gemms_epoch_s": spread([t for t in gemms if t is not None]),
            "sgemm_peak_gflops": spread([r[OURS]["sgemm_peak_gflops"] for r in rounds if OURS in r]),
            "sgemm_peak_epoch_s": spread([t for t in peak_time if t is not None]),
            f"{OURS} / own gemms": ratios(ours, gemms),
            f"{OURS} / sgemm peak": ratios(ours, peak_time),
        }
    return summary


def _seconds(s: dict) -> str:
    return f"{s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f})"


def _ratio(r: dict | None) -> str:
    return "-" if r is None else f"{r['median']:.2f} ({r['min']:.2f}-{r['max']:.2f})"


# issue 29's targets for gpunn's epoch on the 2-core CPU: (what, the ratio's key, at most)
TARGETS = (
    ("PyTorch eager", f"{OURS} / pytorch eager cpu", 0.5),
    ("JAX jit", f"{OURS} / jax jit cpu", 0.8),
    ("its own GEMMs alone", f"{OURS} / own gemms", 1.3),
)


# the workers' median CPU pressure (%) above which a run is too busy to judge the targets by
QUIET_PRESSURE = 10.0


def worker_pressures(result: dict) -> list[float]:
    return [
        w["cpu_pressure_before"]
        for r in result.get("rounds", [])
        for w in r.values()
        if w.get("cpu_pressure_before") is not None
    ]


def target_verdict(ratio: dict, limit: float) -> str:
    """Met only when every round met it, not met when none did; a run whose rounds fall on both sides of
    the target decides nothing (on this VM JAX jit's median epoch moved 0.47-0.78 s between three runs
    while gpunn's stayed within 3%: one run's median ratio would call it either way)."""
    if ratio["max"] <= limit:
        return "met in every round"
    if ratio["min"] > limit:
        return "not met in any round"
    return f"undecided: the rounds' ratios ({ratio['min']:.2f}-{ratio['max']:.2f}) lie on both sides of it"


def target_lines(result: dict) -> list[str]:
    """One line per target: the median per-round ratio and whether the rounds met it (the ratios in the
    file decide), or not judged when the workers' median CPU pressure says the machine was busy."""
    found = {**result["ratios"], **(result.get("roofline") or {})}
    pressures = worker_pressures(result)
    busy = pressures and float(np.median(pressures)) > QUIET_PRESSURE
    lines = []
    for what, key, limit in TARGETS:
        ratio = found.get(key)
        if ratio is None:
            lines.append(f"- gpunn numpy / {what}: not measured (target <= {limit}).")
            continue
        verdict = target_verdict(ratio, limit)
        if busy:
            verdict = f"not judged, the machine was busy (median CPU pressure {np.median(pressures):.0f}% > {QUIET_PRESSURE:.0f}%)"
        lines.append(f"- gpunn numpy / {what}: {ratio['median']:.2f} (target <= {limit}): {verdict}.")
    return lines


def rounds_text(result: dict) -> str:
    done, planned = len(result.get("rounds", [])) or result["setup"]["rounds"], result["setup"]["rounds"]
    if result.get("complete", True) or done >= planned:
        return f"{done} round{'s' if done != 1 else ''}"
    return f"{done} round{'s' if done != 1 else ''} (stopped before the planned {planned} ended)"


def pressure_text(result: dict) -> str:
    """How much the workers waited for a CPU: /proc/pressure/cpu's avg10 as each worker started."""
    seen = worker_pressures(result)
    if not seen:
        return ""
    s = spread(seen)
    return (
        f"; CPU pressure as the workers started (share of the last 10 s in which a task waited for a CPU, "
        f"machine-wide) {s['median']:.0f}% median, {s['min']:.0f}-{s['max']:.0f}%"
    )


def markdown(result: dict, path: str) -> str:
    """The README's performance block for a results file (the README-sync test compares them)."""
    rows, ratio = result["rows"], result["ratios"]
    machine, setup = result["machine"], result["setup"]
    gpu_rows = [name for name in rows if name in {g for _, _, g in TABLE_ROWS if g}]
    blas = ", ".join(
        sorted({f"{t['internal_api']} {t['version']} ({t['num_threads']} threads)" for t in result["blas"]})
    )
    lines = [
        f"Measured by `{setup['command']}` on {machine['processor']} ({machine['cpu_count']} cores, "
        f"{machine['platform']}), {result['date']}: {rounds_text(result)} x {setup['epochs']} timed epochs of "
        f"{setup['samples_per_epoch']:,} samples, each implementation in its own process, "
        f"{setup['wall_s']:.0f} s in all. Load average (1 min) {result['load_average_before'][0]:.2f} before, "
        f"{result['load_average_after'][0]:.2f} after{pressure_text(result)}. {', '.join(f'{k} {v}' for k, v in result['versions'].items())}; "
        f"BLAS: {blas}. Results: `{path}`.",
        "",
        "| implementation | CPU s/epoch, median (min-max) | gpunn numpy / this, per round: median (min-max) "
        "| GPU s/epoch |",
        "|---|---|---|---|",
    ]
    for label, cpu, gpu in TABLE_ROWS:
        if cpu not in rows:
            continue
        ratio_cell = "1.00" if cpu == OURS else _ratio(ratio.get(f"{OURS} / {cpu}"))
        if gpu is None:
            gpu_cell = "-"
        elif gpu in rows:
            gpu_cell = _seconds(rows[gpu]["epoch_s"])
        else:
            gpu_cell = NOT_MEASURED_GPU if not gpu_rows else "not installed"
        lines.append(f"| {label} | {_seconds(rows[cpu]['epoch_s'])} | {ratio_cell} | {gpu_cell} |")
    roof = result.get("roofline")
    if roof:
        lines.append(
            f"| gpunn's own GEMMs alone: the same shapes, timed in the gpunn worker after its epochs "
            f"| {_seconds(roof['own_gemms_epoch_s'])} | {_ratio(roof[f'{OURS} / own gemms'])} | - |"
        )
        peak = roof["sgemm_peak_gflops"]
        lines.append(
            f"| roofline: its {roof['gemm_gflop_per_epoch']:.1f} GFLOP of GEMMs at the 2048^3 sgemm peak "
            f"({peak['median']:.0f} GFLOP/s, {peak['min']:.0f}-{peak['max']:.0f}) "
            f"| {_seconds(roof['sgemm_peak_epoch_s'])} | {_ratio(roof[f'{OURS} / sgemm peak'])} | - |"
        )
    lines += ["", *target_lines(result)]
    tta = result.get("time_to_accuracy")
    if tta:
        lines.append("")
        for entry in tta:
            reached = ", ".join(
                f"{float(k):.1%} after {v['seconds']:.1f} s (epoch {v['epoch']})"
                for k, v in entry["reached"].items()
            )
            lines.append(
                f"- MNIST, recipe {entry['recipe']}: {reached or 'targets not reached'}; final test accuracy "
                f"{entry['final_test_accuracy']:.2%} (training time only)."
            )
    if "peak_rss_mb_gpunn_train" in result:
        lines.append(
            f"- Peak resident memory of `gpunn train` on MNIST: {result['peak_rss_mb_gpunn_train']:.0f} MB."
        )
    return "\n".join(lines) + "\n"
