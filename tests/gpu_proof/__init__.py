"""gpu_proof: gpunn's CUDA kernels executed on the CPU with CUDA's execution model (tests only).

Entry point for scripts/check_gpu.py: `gpu_proof.check_all() -> list[(part, ok, line)]` for the parts
"executor", "tsan", "asan+ubsan", "sizes" and "limits"; `python -m gpu_proof.run_all` (tests/ on
sys.path) prints one line per part and exits 1 on any failure.

- executor.launch(): one `extern "C" __global__` function of a CUDA translation unit over a grid, with
  CuPy's argument packing, the hardware's launch limits (limits.py) and device memory as guarded, sparse,
  file-backed mappings; modes "weak" (fibers, randomised schedule, weak memory model: runtime_fibers.cpp),
  "tsan" and "asan" (OS threads under ThreadSanitizer / AddressSanitizer+UBSan: runtime_threads.cpp);
- elementwise.call(): an ElementwiseKernel call of gpunn's, launched with the translation unit, argument
  views and loop shape CuPy 14.2 itself generates for it (cupy_codegen.py) and CuPy's geometry;
- cupy_codegen.py: the exact translation unit and NVRTC options CuPy 14.2 itself generates for a call
  (run in a subprocess on the pinned wheel in .cupy-real, many calls at once, cached for the process;
  scripts/check_kernels.py compiles them, the executor runs them);
- toolchain.py: g++ builds against CuPy 14.2's real headers, cached outside the repository.
"""
