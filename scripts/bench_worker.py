"""One implementation measured in this process alone: `python scripts/bench.py --worker NAME ...` runs it.

The worker loads its library and the data, warms up (one epoch, or `warmup_steps` steps), times `epochs`
epochs (or `steps` steps each, scaled to an epoch by the step count), and reports one JSON object on its
last stdout line: each timed epoch, what it ran on (library versions, thread pools, thread settings), its
peak resident memory, and for gpunn numpy the same-shape GEMMs alone and the large-sgemm peak, timed in
this process after its epochs. A process of its own per measurement means no other library's thread
pools or allocator are alive while it runs.
"""

from __future__ import annotations

import os
import platform
import time

import bench_peers as peers

THREAD_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "XLA_FLAGS",
    "TF_NUM_INTRAOP_THREADS",
)
PACKAGES = (
    "gpunn",
    "numpy",
    "torch",
    "jax",
    "jaxlib",
    "scikit-learn",
    "threadpoolctl",
    "cupy-cuda12x",
    "cupy-cuda13x",
)


def mb(n_bytes: int) -> float:
    return round(n_bytes / 2**20, 1)


def library_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def thread_settings(library: str) -> dict:
    """The thread pools this process has loaded (threadpoolctl), the environment that sets them, and the
    library's own thread counts: what decides how many cores each implementation used."""
    from threadpoolctl import threadpool_info

    settings: dict = {
        "env": {name: os.environ.get(name) for name in THREAD_ENV},
        "threadpools": [
            {
                "user_api": info["user_api"],
                "internal_api": info["internal_api"],
                "version": info.get("version"),
                "num_threads": info["num_threads"],
                "library": os.path.basename(info["filepath"]),
            }
            for info in threadpool_info()
        ],
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }
    if library == "torch":
        import torch

        settings["torch_num_threads"] = torch.get_num_threads()
        settings["torch_num_interop_threads"] = torch.get_num_interop_threads()
    if library == "jax":
        import jax

        settings["jax_devices"] = [str(d) for d in jax.devices()]
    return settings


def measure(
    name: str,
    sizes: list[int],
    batch: int,
    rows: int,
    epochs: int,
    steps: int | None = None,
    warmup_steps: int | None = None,
) -> dict:
    """Time `name` here: warm-up, then `epochs` timed epochs (each `steps` steps when given, scaled)."""
    from gpunn.procinfo import peak_rss_bytes, rss_bytes

    started = time.perf_counter()
    steps_per_epoch = -(-rows // batch)
    x, y = peers.synthetic(rows, sizes[0], sizes[-1])
    report: dict = {
        "name": name,
        "sizes": sizes,
        "batch": batch,
        "rows": rows,
        "steps_per_epoch": steps_per_epoch,
    }
    report["load_average_before"] = list(os.getloadavg())
    report["cpu_pressure_before"] = cpu_pressure()
    report["pid"] = os.getpid()  # one process per measurement: the bench's test checks they differ
    if name in peers.TRAIN_EPOCH:
        # gpunn.train's own epochs: the first is the warm-up
        seconds = peers.gpunn_train_epochs(peers.TRAIN_EPOCH[name], x, y, epochs + 1)
        report.update(warmup_s=seconds[0], epochs_s=seconds[1:], steps_timed=steps_per_epoch, library="numpy")
    else:
        make, library = peers.MAKERS[name]
        run = make(sizes, batch, x, y)
        report["rss_after_setup_mb"] = mb(rss_bytes())
        start = time.perf_counter()
        run(warmup_steps)
        report["warmup_s"] = time.perf_counter() - start
        timed, cpu, steal = [], [], []
        for _ in range(epochs):
            start, start_cpu, start_steal = time.perf_counter(), _cpu_seconds(), steal_seconds()
            run(steps)
            timed.append(time.perf_counter() - start)
            cpu.append(_cpu_seconds() - start_cpu)
            steal.append(steal_seconds() - start_steal)
        steps_timed = steps_per_epoch if steps is None else min(steps, steps_per_epoch)
        scale = steps_per_epoch / steps_timed
        report.update(steps_timed=steps_timed, library=library)
        report["measured_s"] = timed
        # this process's CPU time over wall time per epoch: ~2 on 2 idle cores, far less when others ran
        report["cpu_per_wall"] = [c / t for c, t in zip(cpu, timed, strict=True)]
        # CPU time the hypervisor gave other guests during each epoch (all cores; 0 on a machine of one's own)
        report["steal_s"] = steal
        report["epochs_s"] = [t * scale for t in timed]
    report["peak_rss_mb"] = mb(peak_rss_bytes())
    if name == "gpunn numpy":
        report.update(own_gemms(sizes, batch, rows, epochs, steps))
    report["threads"] = thread_settings(report["library"])
    report["versions"] = library_versions()
    report["load_average_after"] = list(os.getloadavg())
    report["cpu_pressure_after"] = cpu_pressure()
    report["worker_wall_s"] = time.perf_counter() - started
    return report


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def cpu_pressure() -> float | None:
    """The share of the last 10 s in which some runnable task waited for a CPU (/proc/pressure/cpu,
    machine-wide: other users' work shows here even when their processes are out of sight), or None."""
    try:
        with open("/proc/pressure/cpu") as fh:
            return float(fh.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def steal_seconds() -> float:
    """The machine's stolen CPU time so far (/proc/stat, all cores), 0.0 where it cannot be read."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def own_gemms(sizes, batch, rows, epochs, steps) -> dict:
    """The same-shape GEMMs gpunn's epoch does, timed alone `epochs` times, and the large-sgemm peak."""
    run = peers.gemms_alone(sizes, batch, rows, steps)
    run()
    timed = []
    for _ in range(epochs):
        start = time.perf_counter()
        run()
        timed.append(time.perf_counter() - start)
    steps_per_epoch = -(-rows // batch)
    scale = steps_per_epoch / (steps_per_epoch if steps is None else min(steps, steps_per_epoch))
    return {
        "own_gemms_epoch_s": [t * scale for t in timed],
        "sgemm_peak_gflops": peers.sgemm_peak_gflops(),
        "gemm_gflop_per_epoch": peers.gemm_flops_per_sample(sizes) * rows / 1e9,
    }
