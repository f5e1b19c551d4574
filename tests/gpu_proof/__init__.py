"""The CPU-side proof of gpunn's GPU path (test-only): CuPy 14.2's own generated kernel sources."""
