"""gpunn/backend/kernels.py: the kernel registry, the four arguments CupyBackend builds each kernel from.

The source CuPy generates from them, for each call in a kernel's table, is CuPy's own
(tests/gpu_proof/cupy_codegen.py; tests/test_cupy_codegen.py and tests/test_check_kernels.py).
"""

from __future__ import annotations

import types

from gpunn.backend.kernels import KERNELS, ElementwiseSource

EVERY_KIND = ElementwiseSource(
    "gpunn_every_kind", "T x, raw U w, int64 n", "T y, raw T z", "y = x + w[i] * n;\nz[i] = y"
)


def test_registry_names_are_the_kernel_names_without_prefix():
    assert all(key == source.name.removeprefix("gpunn_") for key, source in KERNELS.items())
    assert all(source.name.startswith("gpunn_") for source in KERNELS.values())


def test_build_passes_cupy_the_four_arguments():
    """cupy.ElementwiseKernel(in_params, out_params, operation, name): the name is the symbol profilers show
    and the one the NVRTC check compiled."""
    recorder = types.SimpleNamespace(ElementwiseKernel=lambda *args, **kwargs: (args, kwargs))
    assert EVERY_KIND.build(recorder) == (
        ("T x, raw U w, int64 n", "T y, raw T z", "y = x + w[i] * n;\nz[i] = y", "gpunn_every_kind"),
        {},
    )
