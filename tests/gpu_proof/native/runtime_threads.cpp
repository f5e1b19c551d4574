// CUDA threads as OS threads, for the sanitizer builds: every thread of a block is a std::thread, `resident`
// blocks run at once (taken in a seeded random order), atomics are __atomic read-modify-writes, a barrier is
// a real barrier. Under ThreadSanitizer a fence is a seq_cst read-modify-write of one shared word (TSan does
// not model standalone fences, and this keeps a fenced publish/consume from being reported as a race).
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <algorithm>

#include "runtime.h"

namespace {

struct Block {
  gp_ids_t base;
  unsigned threads;
  std::mutex lock;
  std::condition_variable wake;
  unsigned waiting = 0, exited = 0;
  uint64_t generation = 0;
  const char* site = nullptr;
  std::vector<char> shared;
  size_t dynamic_offset = 0;
};

thread_local gp_ids_t self_ids;
thread_local Block* self_block = nullptr;
thread_local bool in_kernel = false;
unsigned long fence_word = 0;

void barrier_divergence(Block* b, const char* what) {
  gp_fail("barrier-divergence",
          "__syncthreads() not reached by every thread of block (%u,%u,%u): %s (%u waiting, %u exited of %u)",
          b->base.blockIdx.x, b->base.blockIdx.y, b->base.blockIdx.z, what, b->waiting, b->exited, b->threads);
}

void run_block(const GpLaunchSpec& spec, uint64_t id) {
  Block b;
  b.base.gridDim = spec.grid;
  b.base.blockDim = spec.block;
  b.base.blockIdx = {(unsigned)(id % spec.grid.x), (unsigned)(id / spec.grid.x % spec.grid.y),
                     (unsigned)(id / ((uint64_t)spec.grid.x * spec.grid.y))};
  b.threads = spec.block.x * spec.block.y * spec.block.z;
  b.dynamic_offset = (spec.static_shared + 15) / 16 * 16;
  b.shared.assign(b.dynamic_offset + spec.dynamic_shared + 16, 0);
  std::vector<std::thread> threads;
  threads.reserve(b.threads);
  for (unsigned t = 0; t < b.threads; ++t) {
    threads.emplace_back([&spec, &b, t] {
      self_ids = b.base;
      self_ids.threadIdx = {t % spec.block.x, t / spec.block.x % spec.block.y, t / (spec.block.x * spec.block.y)};
      self_block = &b;
      in_kernel = true;
      gp_invoke(spec.args);
      in_kernel = false;
      std::lock_guard<std::mutex> hold(b.lock);
      ++b.exited;
      if (b.waiting > 0) barrier_divergence(&b, "a thread exited while others wait at a barrier");
    });
  }
  for (auto& t : threads) t.join();
}

}  // namespace

extern "C" const gp_ids_t* gp_ids() { return &self_ids; }

const char* gp_where() {
  static thread_local char text[128];
  if (!in_kernel) return "the driver";
  snprintf(text, sizeof text, "thread (%u,%u,%u) of block (%u,%u,%u)", self_ids.threadIdx.x, self_ids.threadIdx.y,
           self_ids.threadIdx.z, self_ids.blockIdx.x, self_ids.blockIdx.y, self_ids.blockIdx.z);
  return text;
}

extern "C" void gp_syncthreads(const char* site) {
  Block* b = self_block;
  std::unique_lock<std::mutex> hold(b->lock);
  if (b->exited > 0) barrier_divergence(b, "a thread reached a barrier after others exited");
  if (b->waiting == 0) b->site = site;
  else if (b->site != site) gp_fail("barrier-divergence", "threads of block (%u,%u,%u) wait at different __syncthreads(): %s and %s", b->base.blockIdx.x, b->base.blockIdx.y, b->base.blockIdx.z, b->site, site);
  uint64_t generation = b->generation;
  if (++b->waiting == b->threads) {
    b->waiting = 0;
    ++b->generation;
    b->wake.notify_all();
    return;
  }
  if (!b->wake.wait_for(hold, std::chrono::seconds(60), [&] { return b->generation != generation; }))
    barrier_divergence(b, "a barrier waited 60 s");
}

extern "C" void gp_threadfence() {
#if defined(__SANITIZE_THREAD__)
  __atomic_fetch_add(&fence_word, 1, __ATOMIC_SEQ_CST);
#else
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

// CUDA's atomics are relaxed (they order nothing; __threadfence does), and so are these, under
// ThreadSanitizer too: a plain access that only an atomic's ordering would protect (a ticket bumped without an
// atomic, a counter reset by a plain store) is a data race.
constexpr int kOrder = __ATOMIC_RELAXED;

template <typename V> static V apply(int op, V old, V operand, V compare) {
  switch (op) {
    case GP_ADD_I: return old + operand;
    case GP_CAS: return old == compare ? operand : old;
    case GP_EXCH: return operand;
    case GP_MAX_S: case GP_MAX_U: return std::max(old, operand);
    case GP_MIN_S: case GP_MIN_U: return std::min(old, operand);
    case GP_AND: return old & operand;
    case GP_OR: return old | operand;
    case GP_XOR: return old ^ operand;
  }
  gp_fail("atomic", "unknown atomic op %d", op);
}

template <typename Bits, typename Signed> static void rmw(void* address, int op, const void* operand, const void* compare, void* old) {
  Bits* p = (Bits*)address;
  Bits seen = __atomic_load_n(p, __ATOMIC_RELAXED), want = 0;
  Bits x, c;
  memcpy(&x, operand, sizeof x);
  memcpy(&c, compare, sizeof c);
  do {
    if (op == GP_ADD_F32 || op == GP_ADD_F64) {
      if (sizeof(Bits) == 4) { float f, g; memcpy(&f, &seen, 4); memcpy(&g, &x, 4); f += g; memcpy(&want, &f, 4); }
      else { double f, g; memcpy(&f, &seen, 8); memcpy(&g, &x, 8); f += g; memcpy(&want, &f, 8); }
    } else if (op == GP_MAX_S || op == GP_MIN_S) {
      want = (Bits)apply<Signed>(op, (Signed)seen, (Signed)x, (Signed)c);
    } else {
      want = apply<Bits>(op, seen, x, c);
    }
  } while (!__atomic_compare_exchange_n(p, &seen, want, false, kOrder, __ATOMIC_RELAXED));
  memcpy(old, &seen, sizeof seen);
}

extern "C" void gp_atomic(void* address, unsigned size, int op, const void* operand, const void* compare, void* old) {
  if ((uintptr_t)address % size != 0) gp_fail("misaligned-address", "atomic on %s by %s", gp_describe_address((uintptr_t)address).c_str(), gp_where());
  if (size == 4) rmw<uint32_t, int32_t>(address, op, operand, compare, old);
  else if (size == 8) rmw<uint64_t, int64_t>(address, op, operand, compare, old);
  else gp_fail("atomic", "no %u-byte atomics", size);
}

extern "C" void* gp_static_shared(size_t offset) { return self_block->shared.data() + offset; }

extern "C" void* gp_dynamic_shared() { return self_block->shared.data() + self_block->dynamic_offset; }

void gp_run(const GpLaunchSpec& spec) {
  std::vector<uint64_t> order = spec.blocks;
  std::mt19937_64 rng(spec.seed);
  std::shuffle(order.begin(), order.end(), rng);
  size_t next = 0;
  std::mutex take;
  std::vector<std::thread> workers;
  for (int w = 0; w < std::max(1, spec.resident); ++w) {
    workers.emplace_back([&] {
      for (;;) {
        uint64_t id;
        {
          std::lock_guard<std::mutex> hold(take);
          if (next == order.size()) return;
          id = order[next++];
        }
        run_block(spec, id);
      }
    });
  }
  for (auto& w : workers) w.join();
}
