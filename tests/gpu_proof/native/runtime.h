// The seam between driver.cpp (launch file, buffers, faults) and a runtime (runtime_fibers.cpp: CUDA threads
// as fibers over a weak memory model; runtime_threads.cpp: CUDA threads as OS threads, for the sanitizers).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "shim.h"
// the runtime names the fields themselves
#undef threadIdx
#undef blockIdx
#undef blockDim
#undef gridDim

struct GpBuffer {
  std::string name;
  char* data;       // what the kernel's pointers point into
  size_t bytes;
  char* reserved;   // [reserved, reserved + reserved_bytes): the buffer and its PROT_NONE guards
  size_t reserved_bytes;
};

struct GpLaunchSpec {
  dim3 grid, block;
  size_t dynamic_shared = 0;
  size_t static_shared = 0;
  uint64_t seed = 0;
  int resident = 2;                 // blocks running at once
  double p_stale = 0.9;             // fibers: a load not ordered by a fence sees the older value
  double p_switch = 0.1;            // fibers: a memory access is also a switch point
  double p_drain = 0.05;            // fibers: at a switch point, one buffered store becomes visible
  double p_delay = 0.5;             // fibers: at a fence or atomic, the thread stalls for a while
  std::vector<uint64_t> blocks;     // linear block ids to run (the others are skipped)
  void** args = nullptr;
};

extern std::vector<GpBuffer> gp_buffers;
extern "C" void gp_invoke(void** args);               // generated: calls the kernel with its arguments
extern "C" const unsigned long gp_static_shared_bytes;  // generated: the kernel's static __shared__ bytes
extern "C" const unsigned long gp_param_sizes[];       // generated: sizeof of each kernel parameter type
extern "C" const unsigned long gp_param_count;
void gp_run(const GpLaunchSpec& spec);                  // the runtime's grid launch
[[noreturn]] void gp_fail(const char* kind, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
const char* gp_where();                                 // "thread (x,y,z) of block (x,y,z)" of the caller
const GpBuffer* gp_guard_of(uintptr_t address);         // the buffer whose guard holds address, or null
std::string gp_describe_address(uintptr_t address);     // "N bytes past the end of buffer 'x'"
