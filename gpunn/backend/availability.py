"""What each device kind can do on this machine, in words: the backend half of `gpunn info`.

Everything here looks at hardware and device libraries, so it lives behind the backend seam; info.py only
arranges the lines.
"""

from __future__ import annotations

from gpunn.backend.cuda_probe import cuda_status


def device_lines() -> list[str]:
    """One line per device kind (available or not, and why), plus each GPU when CUDA works."""
    strict_ok, strict_why = strict_status()
    cuda_ok, cuda_why = cuda_status(0)
    lines = [
        "  cpu     available (NumPy)",
        f"  strict  {_word(strict_ok)} ({strict_why})",
        f"  cuda    {_word(cuda_ok)} ({cuda_why})",
    ]
    return lines + [f"    {line}" for line in cuda_details()]


def collective_line() -> str:
    """The device-side collective of distributed training (NCCL for GPUs), available or not and why."""
    from gpunn.backend.collectives import nccl_available

    nccl_ok, nccl_why = nccl_available() if cuda_status(0)[0] else (False, "needs CUDA")
    return f"NCCL {_word(nccl_ok)} ({nccl_why})"


def cuda_details() -> list[str]:
    """CuPy/CUDA versions and each GPU's name and memory; empty when CUDA is unusable."""
    usable, _ = cuda_status(0)
    if not usable:
        return []
    import cupy

    rt = cupy.cuda.runtime
    lines = [
        f"CuPy {cupy.__version__}, CUDA runtime {rt.runtimeGetVersion()}, driver {rt.driverGetVersion()}"
    ]
    for index in range(rt.getDeviceCount()):
        props = rt.getDeviceProperties(index)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        lines.append(f"cuda:{index}: {name}, {props['totalGlobalMem'] / 2**30:.1f} GiB")
    return lines


def strict_status() -> tuple[bool, str]:
    try:
        import array_api_strict
    except ImportError:
        return False, 'array-api-strict is not installed (pip install "gpunn[test]")'
    return True, f"array-api-strict {array_api_strict.__version__}"


def _word(ok: bool) -> str:
    return "available" if ok else "unavailable"
