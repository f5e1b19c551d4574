// What NVRTC gives a CUDA translation unit, for g++ on the host (tests/gpu_proof). Included before CuPy's
// own headers (cupy/complex.cuh, carray.cuh, atomics.cuh, math_constants.h), which compile unchanged.
// The built-in variables, barriers, fences and atomics are calls into the runtime the executable links
// (runtime_fibers.cpp or runtime_threads.cpp), so each thread of the grid sees its own ids.
#pragma once
#include <cassert>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <math.h>  // the C names in the global namespace too (CuPy's complex headers use ::signbit)
// CUDA's math functions have float and double overloads in the global namespace.
using std::abs; using std::ceil; using std::cos; using std::exp; using std::fabs; using std::floor;
using std::fmax; using std::fmin; using std::isinf; using std::isnan; using std::log; using std::log1p;
using std::max; using std::min; using std::pow; using std::sin; using std::sqrt; using std::tanh;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict

struct dim3 { unsigned int x, y, z; };
struct gp_ids_t { dim3 threadIdx, blockIdx, blockDim, gridDim; };
extern "C" const gp_ids_t* gp_ids();
#define threadIdx (gp_ids()->threadIdx)
#define blockIdx (gp_ids()->blockIdx)
#define blockDim (gp_ids()->blockDim)
#define gridDim (gp_ids()->gridDim)
#define warpSize 32

extern "C" void gp_syncthreads(const char* site);  // site: file:line, to catch divergent barriers
extern "C" void gp_threadfence();
#define GP_STR2(x) #x
#define GP_STR(x) GP_STR2(x)
#define __syncthreads() gp_syncthreads(__FILE__ ":" GP_STR(__LINE__))
#define __threadfence() gp_threadfence()
#define __threadfence_block() gp_threadfence()

// Shared memory: the executor rewrites each `__shared__` declaration of the kernel source into a macro over
// these (per block storage, the layout fixed at compile time; the only rewrite it makes), so __shared__ itself must never survive.
extern "C" void* gp_static_shared(size_t offset);  // this block's static shared memory + offset
extern "C" void* gp_dynamic_shared();

// Atomics: one read-modify-write in the runtime (the op codes below), on memory every thread shares.
enum { GP_ADD_I = 1, GP_ADD_F32, GP_ADD_F64, GP_CAS, GP_EXCH, GP_MAX_S, GP_MIN_S, GP_MAX_U, GP_MIN_U,
       GP_AND, GP_OR, GP_XOR };
extern "C" void gp_atomic(void* address, unsigned size, int op, const void* operand, const void* compare,
                          void* old);
template <typename V> inline V gp_rmw(V* address, int op, V operand, V compare = V()) {
  V old; gp_atomic((void*)address, sizeof(V), op, &operand, &compare, &old); return old;
}
inline int atomicAdd(int* a, int v) { return gp_rmw(a, GP_ADD_I, v); }
inline unsigned int atomicAdd(unsigned int* a, unsigned int v) { return gp_rmw(a, GP_ADD_I, v); }
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) { return gp_rmw(a, GP_ADD_I, v); }
inline float atomicAdd(float* a, float v) { return gp_rmw(a, GP_ADD_F32, v); }
inline double atomicAdd(double* a, double v) { return gp_rmw(a, GP_ADD_F64, v); }
inline int atomicSub(int* a, int v) { return gp_rmw(a, GP_ADD_I, -v); }
inline unsigned int atomicSub(unsigned int* a, unsigned int v) { return gp_rmw(a, GP_ADD_I, 0u - v); }
inline int atomicCAS(int* a, int c, int v) { return gp_rmw(a, GP_CAS, v, c); }
inline unsigned int atomicCAS(unsigned int* a, unsigned int c, unsigned int v) { return gp_rmw(a, GP_CAS, v, c); }
inline unsigned long long atomicCAS(unsigned long long* a, unsigned long long c, unsigned long long v) {
  return gp_rmw(a, GP_CAS, v, c);
}
inline int atomicExch(int* a, int v) { return gp_rmw(a, GP_EXCH, v); }
inline unsigned int atomicExch(unsigned int* a, unsigned int v) { return gp_rmw(a, GP_EXCH, v); }
inline float atomicExch(float* a, float v) { return gp_rmw(a, GP_EXCH, v); }
inline int atomicMax(int* a, int v) { return gp_rmw(a, GP_MAX_S, v); }
inline int atomicMin(int* a, int v) { return gp_rmw(a, GP_MIN_S, v); }
inline unsigned int atomicMax(unsigned int* a, unsigned int v) { return gp_rmw(a, GP_MAX_U, v); }
inline unsigned int atomicMin(unsigned int* a, unsigned int v) { return gp_rmw(a, GP_MIN_U, v); }
inline long long atomicMax(long long* a, long long v) { return gp_rmw(a, GP_MAX_S, v); }
inline long long atomicMin(long long* a, long long v) { return gp_rmw(a, GP_MIN_S, v); }
inline unsigned int atomicAnd(unsigned int* a, unsigned int v) { return gp_rmw(a, GP_AND, v); }
inline unsigned int atomicOr(unsigned int* a, unsigned int v) { return gp_rmw(a, GP_OR, v); }
inline unsigned int atomicXor(unsigned int* a, unsigned int v) { return gp_rmw(a, GP_XOR, v); }

inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline long long __double_as_longlong(double f) { long long i; memcpy(&i, &f, 8); return i; }
inline double __longlong_as_double(long long i) { double f; memcpy(&f, &i, 8); return f; }
