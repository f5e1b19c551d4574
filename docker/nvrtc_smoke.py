"""Build-time proof that this image can compile CUDA kernels: NVRTC plus the runtime headers. No GPU needed.

CuPy compiles every elementwise kernel with NVRTC, and from CUDA 12.2 the kernels include the runtime
headers (cuda_fp16.h pulls vector_types.h); CuPy 14 finds NVRTC and the headers with cuda.pathfinder
(cupy/_environment.py, cupy/_core/core.pyx). This does the same lookups and compiles one kernel to PTX,
so an image without headers or NVRTC fails at `docker build`, not at the first `gpunn train`.
CuPy itself cannot compile here: it asks the (absent) device for its architecture first.
"""

from __future__ import annotations

import ctypes
import sys

from cuda.pathfinder import find_nvidia_header_directory, load_nvidia_dynamic_lib

SOURCE = b"""#include <cuda_fp16.h>
extern "C" __global__ void gpunn_smoke(float* x, int n) {
    int i = blockDim.x * blockIdx.x + threadIdx.x;
    if (i < n) x[i] = __half2float(__float2half(x[i])) + 1.0f;
}
"""


def main() -> int:
    include = find_nvidia_header_directory("cudart")
    if include is None:
        print("nvrtc smoke: no CUDA runtime headers found (install the cuda extra's [ctk])", file=sys.stderr)
        return 1
    nvrtc = ctypes.CDLL(load_nvidia_dynamic_lib("nvrtc").abs_path)
    program = ctypes.c_void_p()
    if nvrtc.nvrtcCreateProgram(ctypes.byref(program), SOURCE, b"gpunn_smoke.cu", 0, None, None) != 0:
        print("nvrtc smoke: nvrtcCreateProgram failed", file=sys.stderr)
        return 1
    options = [b"--gpu-architecture=compute_80", b"-I" + include.encode()]
    status = nvrtc.nvrtcCompileProgram(program, len(options), (ctypes.c_char_p * len(options))(*options))
    log_size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(log_size))
    log = ctypes.create_string_buffer(log_size.value)
    nvrtc.nvrtcGetProgramLog(program, log)
    ptx_size = ctypes.c_size_t()
    nvrtc.nvrtcGetPTXSize(program, ctypes.byref(ptx_size))
    nvrtc.nvrtcDestroyProgram(ctypes.byref(program))
    if status != 0:
        print(f"nvrtc smoke: compiling failed (nvrtcResult {status}):\n{log.value.decode()}", file=sys.stderr)
        return 1
    print(f"nvrtc smoke: one kernel compiled to {ptx_size.value} bytes of PTX with headers from {include}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
