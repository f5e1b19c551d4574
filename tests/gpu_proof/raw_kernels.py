"""Small RawKernel-style CUDA kernels for what gpunn's kernels never use: __shared__ memory (static and
dynamic), __syncthreads() and a hand-written grid-stride loop. Each is correct as written; the tests
plant bugs in it as text edits."""

from __future__ import annotations

# One partial sum per block, a tree reduction in shared memory (blockDim.x a power of two, at most 256).
BLOCK_SUM = """
extern "C" __global__ void block_sum(const float* x, float* out, long long n) {
    __shared__ float partial[256];
    const unsigned int t = threadIdx.x;
    float mine = 0.0f;
    for (long long i = (long long)blockIdx.x * blockDim.x + t; i < n; i += (long long)blockDim.x * gridDim.x)
        mine += x[i];
    partial[t] = mine;
    __syncthreads();
    for (unsigned int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) partial[t] += partial[t + s];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = partial[0];
}
"""

# The same with its shared memory sized at launch (extern __shared__, shared_mem = blockDim.x * 4 bytes).
BLOCK_SUM_DYNAMIC = BLOCK_SUM.replace("block_sum(", "block_sum_dynamic(").replace(
    "__shared__ float partial[256];", "extern __shared__ float partial[];"
)


# Static shared memory of a given size (bytes a multiple of 4), each thread writing its own word.
def static_shared(nbytes: int) -> str:
    return f"""
extern "C" __global__ void big_shared(float* out) {{
    __shared__ float scratch[{nbytes // 4}];
    scratch[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = scratch[threadIdx.x];
}}
"""


# Thread 0 of each block takes a ticket: the order in which blocks started.
BLOCK_ORDER = """
extern "C" __global__ void block_order(unsigned int* counter, unsigned int* ticket) {
    if (threadIdx.x == 0) ticket[blockIdx.x] = atomicAdd(counter, 1u);
}
"""

# Thread 0 waits for thread 1 of its block: finishes only if the threads of a block really run at once.
HANDSHAKE = """
extern "C" __global__ void handshake(unsigned int* flag, unsigned int* out) {
    if (threadIdx.x == 0) {
        while (atomicAdd(&flag[blockIdx.x], 0u) == 0u) {}
        out[blockIdx.x] = 7u;
    }
    if (threadIdx.x == 1) atomicExch(&flag[blockIdx.x], 1u);
}
"""
