"""How the cost grows: epoch time and peak memory of gpunn, PyTorch eager and JAX jit against hidden width,
depth, batch size and dataset size.

    python scripts/cost_growth.py [--libs gpunn,torch,jax] [--gpu] [--out FILE] [--force] [--quick]
    python scripts/cost_growth.py --plot FILE     # redraw docs/img/scaling.png from a results file

Each point is measured in a process of its own (`scripts/bench.py --worker`): synthetic MNIST-shaped uint8
rows, SGD lr 0.1, the weights from gpunn's He init. Axes, each varied from the 784-128-64-10 / batch 128 /
60,000-row setting: hidden width (2 hidden layers of W units, W = 128..4096), depth (D hidden layers of 256
units, D = 2..6), batch size (32..4096) and dataset size (60,000 to 1,000,000 rows). On the width, depth and
batch axes an epoch is timed on its first S steps (S sized to about a second of GEMMs, at least 10) and
scaled to the epoch's step count; on the rows axis whole epochs are timed, as the growth in rows is the
question there. Peak memory is the worker's VmHWM (interpreter, library, data and all). The growth
exponents are the least-squares slopes of log time (and log memory) against log size, over all points and
over the three largest; `lead` says, per axis, gpunn's time over each peer's at each point and the first
point where gpunn is no longer faster. Results: benchmarks/results/cost-growth-<date>-<host>.json and
docs/img/scaling.png (log-log, one panel per axis).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))

import bench  # noqa: E402
import bench_peers as peers  # noqa: E402
import bench_summary as summary  # noqa: E402

LIBRARIES = {  # short name -> (CPU row, GPU row)
    "gpunn": ("gpunn numpy", "gpunn cuda"),
    "torch": ("pytorch eager cpu", "pytorch eager cuda"),
    "jax": ("jax jit cpu", "jax jit gpu"),
}
FULL_AXES = {
    "width": [128, 256, 512, 1024, 2048, 4096],
    "depth": [2, 3, 4, 5, 6],
    "batch": [32, 64, 128, 256, 512, 1024, 2048, 4096],
    "rows": [60_000, 125_000, 250_000, 500_000, 1_000_000],
}
QUICK_AXES = {"width": [32, 64], "depth": [2, 3], "batch": [32, 64], "rows": [1_000, 2_000]}
BASE = {"sizes": [784, 128, 64, 10], "batch": 128, "rows": 60_000}
TIMED_GFLOP = 50.0  # GEMM work per timed repeat on the scaled axes: about a second on the 2-core VM
MIN_STEPS, WARMUP_STEPS, REPEATS = 10, 3, 2
TIMEOUT_S = 600


def spread_points(values: list[int], count: int | None) -> list[int]:
    """`count` of an axis's values, spread over it with both ends kept (all of them when None)."""
    if count is None or count >= len(values):
        return list(values)
    if count < 2:
        raise bench.BenchError("--points must be at least 2 (a slope needs two points)")
    return [values[i] for i in sorted({round(i) for i in np.linspace(0, len(values) - 1, count)})]


def config(axis: str, value: int, quick: bool = False) -> dict:
    """The model, batch and rows of one point on `axis`."""
    rows = 2_000 if quick else BASE["rows"]
    point = {"sizes": list(BASE["sizes"]), "batch": BASE["batch"], "rows": rows}
    if axis == "width":
        point["sizes"] = [784, value, value, 10]
    elif axis == "depth":
        point["sizes"] = [784, *([64 if quick else 256] * value), 10]
    elif axis == "batch":
        point["batch"] = value
    elif axis == "rows":
        point["rows"] = value
    else:
        raise ValueError(f"unknown axis {axis!r}")
    return point


def steps_to_time(point: dict, axis: str, quick: bool = False) -> int | None:
    """Steps timed per repeat: None (the whole epoch) on the rows axis, else about TIMED_GFLOP of GEMMs."""
    if axis == "rows":
        return None
    steps_per_epoch = -(-point["rows"] // point["batch"])
    if quick:
        return min(5, steps_per_epoch)
    per_step = peers.gemm_flops_per_sample(point["sizes"], first_input_grad=True) * point["batch"] / 1e9
    return int(min(steps_per_epoch, max(MIN_STEPS, round(TIMED_GFLOP / per_step))))


def measure(name: str, axis: str, value: int, quick: bool) -> dict:
    point = config(axis, value, quick)
    steps = steps_to_time(point, axis, quick)
    args = ["--sizes", "-".join(map(str, point["sizes"])), "--batch", str(point["batch"])]
    args += ["--rows", str(point["rows"]), "--epochs", str(1 if axis == "rows" and not quick else REPEATS)]
    args += ["--warmup-steps", str(WARMUP_STEPS if steps is not None else 20)]
    args += ["--steps", str(steps)] if steps is not None else []
    report = bench.run_worker(name, args, timeout=TIMEOUT_S)
    return {
        "value": value,
        **point,
        "steps_timed": report["steps_timed"],
        "steps_per_epoch": report["steps_per_epoch"],
        "scaled_from_steps": steps is not None and report["steps_timed"] < report["steps_per_epoch"],
        "epoch_s": float(np.median(report["epochs_s"])),
        "epochs_s": report["epochs_s"],
        "peak_rss_mb": report["peak_rss_mb"],
        "rss_after_setup_mb": report.get("rss_after_setup_mb"),
        "cpu_per_wall": report.get("cpu_per_wall"),
        # gpunn's worker also times its same-shape GEMMs alone: how much of its epoch is not GEMM
        "own_gemms_epoch_s": float(np.median(report["own_gemms_epoch_s"]))
        if "own_gemms_epoch_s" in report
        else None,
        "steal_s": report.get("steal_s"),
        "load_average_before": report["load_average_before"],
        "cpu_pressure_before": report.get("cpu_pressure_before"),
        "worker_wall_s": report["worker_wall_s"],
        "threads": report["threads"],
    }


def slope(xs, ys) -> float | None:
    """Least-squares slope of log y against log x (the growth exponent); None with fewer than 2 points."""
    if len(xs) < 2:
        return None
    return float(np.polyfit(np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float)), 1)[0])


def exponents(points: list[dict], key: str) -> dict:
    xs, ys = [p["value"] for p in points], [p[key] for p in points]
    top = sorted(zip(xs, ys, strict=True))[-3:]
    return {"all": slope(xs, ys), "largest_3": slope([x for x, _ in top], [y for _, y in top])}


def lead(curves: dict[str, list[dict]], ours: str) -> dict:
    """Per peer: gpunn's epoch time over the peer's at each point, and the first point where it is >= 1."""
    mine = {p["value"]: p["epoch_s"] for p in curves.get(ours, [])}
    out = {}
    for name, points in curves.items():
        if name == ours or not mine:
            continue
        ratio = {p["value"]: mine[p["value"]] / p["epoch_s"] for p in points if p["value"] in mine}
        ends = next((value for value in sorted(ratio) if ratio[value] >= 1.0), None)
        out[f"{ours} / {name}"] = {
            "ratio": {str(k): v for k, v in sorted(ratio.items())},
            "gpunn_not_faster_from": ends,
        }
    return out


def analyse(axes: dict[str, dict[str, list[dict]]]) -> dict:
    """The fitted exponents (time and peak memory) per axis and library, and where gpunn's lead ends."""
    fits, leads = {}, {}
    for axis, curves in axes.items():
        fits[axis] = {
            name: {"time": exponents(points, "epoch_s"), "peak_rss": exponents(points, "peak_rss_mb")}
            for name, points in curves.items()
        }
        for ours in ("gpunn numpy", "gpunn cuda"):
            if ours in curves:
                leads.setdefault(axis, {}).update(lead(curves, ours))
    return {"exponents": fits, "lead": leads}


def _cell(fit: dict) -> str:
    time_fit, memory = fit["time"], fit["peak_rss"]
    return f"{time_fit['all']:.2f} ({time_fit['largest_3']:.2f}); memory {memory['all']:.2f}"


def _from(value) -> str:
    return "never" if value is None else f"{value:,}"


def point_pressures(result: dict) -> list[float]:
    """The machine's CPU pressure as each point's worker started (those that could read it)."""
    return [
        p["cpu_pressure_before"]
        for curves in result["axes"].values()
        for points in curves.values()
        for p in points
        if p.get("cpu_pressure_before") is not None
    ]


def _pressure(result: dict) -> str:
    seen = point_pressures(result)
    if not seen:
        return ""
    return f", CPU pressure as the points started {np.median(seen):.0f}% median ({min(seen):.0f}-{max(seen):.0f}%)"


def markdown(result: dict, path: str) -> str:
    """The README's block for a results file: the fitted exponents and where gpunn's lead ends."""
    machine, setup = result["machine"], result["setup"]
    names = list(dict.fromkeys(n for curves in result["axes"].values() for n in curves))
    lines = [
        f"Measured by `{setup['command']}` on {machine['processor']} ({machine['cpu_count']} cores), "
        f"{result['date']}, {setup['wall_s'] / 60:.0f} minutes, load average (1 min) "
        f"{result['load_average_before'][0]:.2f} before and {result['load_average_after'][0]:.2f} after"
        f"{_pressure(result)}. "
        f"{'' if result.get('complete', True) else 'Stopped before the planned axes ended. '}"
        f"Results: `{path}`. Each cell: the log-log slope of epoch time over all points (over the 3 largest), "
        "and of peak memory.",
        "",
        "| axis (range) | " + " | ".join(names) + " | gpunn numpy is no longer faster from |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for axis, curves in result["axes"].items():
        values = setup["axes"][axis]
        cells = [_cell(result["exponents"][axis][n]) if n in curves else "-" for n in names]
        ends = [
            f"{key.split(' / ')[1]}: {_from(entry['gpunn_not_faster_from'])}"
            for key, entry in result["lead"].get(axis, {}).items()
            if key.startswith("gpunn numpy")
        ]
        lines.append(
            f"| {axis} ({values[0]:,}-{values[-1]:,}) | "
            + " | ".join(cells)
            + f" | {'; '.join(ends) or '-'} |"
        )
    lines += ["", *reading(result)]
    seen = point_pressures(result)
    if seen and np.median(seen) > summary.QUIET_PRESSURE:
        lines.append(
            f"- The machine was busy (median CPU pressure {np.median(seen):.0f}% > {summary.QUIET_PRESSURE:.0f}%): "
            "these slopes and crossings measure its other load as much as the libraries."
        )
    return "\n".join(lines) + "\n"


# what a slope means, for the generated reading (time ~ size^slope)
GROWTH_WORDS = (
    (0.15, "flat"),
    (0.75, "sublinear"),
    (1.25, "linear"),
    (1.75, "between linear and quadratic"),
    (2.25, "about quadratic"),
)


def growth_word(exponent: float) -> str:
    if exponent < -0.15:
        return "falling"
    return next((word for limit, word in GROWTH_WORDS if exponent < limit), "steeper than quadratic")


def reading(result: dict) -> list[str]:
    """One generated line per axis: the range of the fitted time slopes over the largest points, in words."""
    lines = []
    for axis, fits in result["exponents"].items():
        top = {
            name: fit["time"]["largest_3"]
            for name, fit in fits.items()
            if fit["time"]["largest_3"] is not None
        }
        if not top:
            continue
        cells = ", ".join(f"{name} {value:.2f} ({growth_word(value)})" for name, value in top.items())
        lines.append(f"- Epoch time against {axis}, slope over the 3 largest points: {cells}.")
    return lines


def plot(result: dict, path: Path) -> None:
    """Log-log: one column per axis, epoch time on top and peak memory below, a line per library."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = result["axes"]
    figure, grid = plt.subplots(2, len(axes), figsize=(4.2 * len(axes), 7.5), squeeze=False)
    labels = {
        "width": "hidden width (2 layers)",
        "depth": "hidden layers (width 256)",
        "batch": "batch size",
        "rows": "rows per epoch",
    }
    for column, (axis, curves) in enumerate(axes.items()):
        for name, points in curves.items():
            xs = [p["value"] for p in points]
            fit = result["exponents"][axis][name]
            grid[0][column].loglog(
                xs, [p["epoch_s"] for p in points], "o-", label=f"{name} (slope {fit['time']['all']:.2f})"
            )
            grid[1][column].loglog(xs, [p["peak_rss_mb"] for p in points], "o-", label=name)
        grid[0][column].set_title(f"epoch time vs {axis}")
        grid[1][column].set_xlabel(labels.get(axis, axis))
        grid[0][column].legend(fontsize=7)
        values = sorted({p["value"] for points in curves.values() for p in points})
        for row in (0, 1):
            grid[row][column].grid(True, which="major", alpha=0.3)
            grid[row][column].set_xticks(values, [f"{v:,}" for v in values], rotation=45, fontsize=7)
            grid[row][column].minorticks_off()
    grid[0][0].set_ylabel("seconds per epoch")
    grid[1][0].set_ylabel("peak RSS (MB)")
    machine = result["machine"]
    figure.suptitle(
        f"{result['date']}, {machine['processor']}, {machine['cpu_count']} cores ({result['source']})",
        fontsize=9,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def study(args, path: Path | None = None) -> dict:
    """Measure every point; after each axis the results so far go to `path` ("complete": false)."""
    notes: list[str] = []
    libs = [lib.strip() for lib in args.libs.split(",") if lib.strip()]
    unknown = set(libs) - set(LIBRARIES)
    if unknown:
        raise bench.BenchError(f"unknown --libs {sorted(unknown)}; choose from {sorted(LIBRARIES)}")
    names = bench.plan([LIBRARIES[lib][0] for lib in libs], notes)
    if args.gpu:
        names += [n for n in bench.gpu_rows([LIBRARIES[lib][1] for lib in libs], notes) if n in peers.MAKERS]
    axes_values = {
        axis: spread_points(values, args.points)
        for axis, values in (QUICK_AXES if args.quick else FULL_AXES).items()
    }
    started, load_before = time.perf_counter(), list(os.getloadavg())
    axes: dict = {}
    for axis, values in axes_values.items():
        axes[axis] = {name: [] for name in names}
        for value in values:
            for name in bench.rotated(names, value):  # alternate who goes first
                point = measure(name, axis, value, args.quick)
                axes[axis][name].append(point)
                print(
                    f"{axis:>5} {value:>8} {name:<20} {point['epoch_s']:9.3f} s/epoch {point['peak_rss_mb']:8.0f} MB"
                )
        if path is not None:
            bench.write_results(
                snapshot(args, axes, axes_values, notes, load_before, started, path), path, quiet=True
            )
    return snapshot(args, axes, axes_values, notes, load_before, started, path, complete=True)


def snapshot(args, axes, axes_values, notes, load_before, started, path, complete=False) -> dict:
    """The results file's content from the axes measured so far."""
    result = {
        "kind": "cost-growth",
        "complete": complete,
        "date": datetime.date.today().isoformat(),
        "host": socket.gethostname(),
        "machine": bench.machine(),
        "setup": {
            "command": "python scripts/cost_growth.py"
            + (" --quick" if args.quick else "")
            + (f" --points {args.points}" if args.points else "")
            + (f" --libs {args.libs}" if args.libs != "gpunn,torch,jax" else ""),
            "base": BASE,
            "axes": axes_values,
            "timed_gflop_per_repeat": TIMED_GFLOP,
            "min_steps": MIN_STEPS,
            "warmup_steps": WARMUP_STEPS,
            "repeats": REPEATS,
            "scaling": (
                "width, depth and batch axes: each repeat times the epoch's first steps_timed steps and scales "
                "by steps_per_epoch / steps_timed (median of the repeats); rows axis: one whole epoch after 20 "
                "warm-up steps"
            ),
            "quick": args.quick,
        },
        "load_average_before": load_before,
        "axes": axes,
        **analyse(axes),
        "notes": notes,
    }
    result["load_average_after"] = list(os.getloadavg())
    result["setup"]["wall_s"] = time.perf_counter() - started
    result["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    result["source"] = path.name if path is not None else None
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--libs", default="gpunn,torch,jax", help="comma-separated: gpunn, torch, jax")
    parser.add_argument("--gpu", action="store_true", help="also the cuda rows, where a GPU is usable")
    parser.add_argument(
        "--points", type=int, help="only this many points per axis, ends included (a shorter run)"
    )
    parser.add_argument("--quick", action="store_true", help="two tiny points per axis (a smoke, for CI)")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/cost-growth-<date>-<host>.json)")
    parser.add_argument("--image", help="PNG path (default docs/img/scaling.png; --quick: next to --out)")
    parser.add_argument("--force", action="store_true", help="replace an existing results file")
    parser.add_argument("--plot", metavar="FILE", help="only redraw the picture from a results file")
    parser.add_argument("--table", metavar="FILE", help="print the README block of a results file and exit")
    args = parser.parse_args(argv)
    try:
        if args.table:
            try:
                result = json.loads(Path(args.table).read_text())
            except (OSError, ValueError) as exc:
                raise bench.BenchError(f"cannot read results file {args.table}: {exc}") from None
            print(markdown(result, bench.shown_path(Path(args.table))), end="")
            return 0
        if args.plot:
            try:
                result = json.loads(Path(args.plot).read_text())
            except (OSError, ValueError) as exc:
                raise bench.BenchError(f"cannot read results file {args.plot}: {exc}") from None
            image = Path(args.image or bench.ROOT / "docs" / "img" / "scaling.png")
            result.setdefault("source", Path(args.plot).name)
            plot(result, image)
            print(f"wrote {image}")
            return 0
        path = bench.results_path(args.out, args.force, prefix="cost-growth-")
        if args.quick and not args.image:
            image = path.with_suffix(".png")
        else:
            image = Path(args.image or bench.ROOT / "docs" / "img" / "scaling.png")
        result = study(args, path)
        bench.write_results(result, path)
        plot(result, image)
        print(f"wrote {image}; wall time {result['setup']['wall_s']:.0f} s")
        for axis, fits in result["exponents"].items():
            print(
                f"{axis}: "
                + ", ".join(
                    f"{n} {f['time']['all']:.2f} (top {f['time']['largest_3']:.2f})" for n, f in fits.items()
                )
            )
        return 0
    except bench.BenchError as exc:
        print(f"cost_growth: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
