// CUDA threads as fibers over a weak memory model of our own (the default executor).
//
// Scheduling: `resident` blocks are live at once (taken in a seeded random order); at every switch point
// (each atomic, fence and barrier, and a seeded fraction p_switch of memory accesses) a seeded random live
// fiber of any live block runs next; at a fence or atomic the thread stalls (with probability p_delay) for a
// random number of scheduler steps, so other threads overtake it there.
//
// Memory: the kernel translation unit is compiled with GCC's -fsanitize=thread *instrumentation only*; this
// file defines the __tsan_* hooks it calls before every load and store, and models the buffers of the launch
// and each block's shared memory:
// - a plain store goes to its thread's store buffer: the thread itself sees it (forwarding), no other thread
//   does until it drains: at the thread's __threadfence() or __syncthreads(), at kernel end, or at random
//   (p_drain per switch point), in any order;
// - a plain load may return an older value of the location: with probability p_stale, the value the location
//   had at the thread's last fence or barrier (or the newest it already saw or wrote: per location coherence);
// - atomics act on memory itself and order nothing (CUDA's atomicAdd is relaxed); fences order.
// So a publish without a fence before the flag, or a consume without a fence after it, reads stale data.
#include <ucontext.h>
#include <sys/mman.h>

#include <algorithm>
#include <random>
#include <unordered_map>

#include "runtime.h"

namespace {

struct Entry { uintptr_t address; unsigned size; unsigned char bytes[16]; };

// A thread's buffered stores, unordered, indexed by start address (stores are at most 16 bytes).
struct StoreBuffer {
  std::vector<Entry> entries;
  std::unordered_map<uintptr_t, size_t> at;
  bool empty() const { return entries.empty(); }
  size_t size() const { return entries.size(); }
  void add(const Entry& e) {
    at[e.address] = entries.size();
    entries.push_back(e);
  }
  void remove(size_t k) {
    at.erase(entries[k].address);
    if (k + 1 != entries.size()) {
      entries[k] = entries.back();
      at[entries[k].address] = k;
    }
    entries.pop_back();
  }
  // indices of the entries overlapping [a, a + n), highest first (so remove() keeps the rest valid)
  std::vector<size_t> overlapping(uintptr_t a, size_t n) const {
    std::vector<size_t> found;
    if (n + 16 > entries.size()) {
      for (size_t k = 0; k < entries.size(); ++k)
        if (entries[k].address < a + n && a < entries[k].address + entries[k].size) found.push_back(k);
    } else {
      for (uintptr_t x = a >= 15 ? a - 15 : 0; x < a + n; ++x) {
        auto it = at.find(x);
        if (it != at.end() && x + entries[it->second].size > a) found.push_back(it->second);
      }
    }
    std::sort(found.rbegin(), found.rend());
    return found;
  }
};

struct Block;
struct Fiber {
  gp_ids_t ids;
  ucontext_t context;
  char* stack = nullptr;
  Block* block = nullptr;
  enum { RUNNABLE, AT_BARRIER, DONE } state = RUNNABLE;
  StoreBuffer buffer;
  uintptr_t dirty = 0;                             // the store announced by the last write hook
  unsigned dirty_size = 0;
  unsigned char dirty_old[16];
  uint64_t last_sync = 0;                          // memory time of the last fence or barrier
  uint64_t wake_at = 0;                            // scheduler step before which it is not picked
  std::unordered_map<uintptr_t, uint64_t> floor;   // per byte: the newest time this thread saw or wrote
};

struct Block {
  gp_ids_t base;
  std::vector<Fiber*> fibers;
  unsigned live = 0, waiting = 0, exited = 0;
  const char* site = nullptr;
  char* shared = nullptr;
  size_t shared_bytes = 0;
  char* shared_reserved = nullptr;  // the shared memory and its guards
  size_t shared_span = 0;
  size_t dynamic_offset = 0;
};

struct Region { uintptr_t lo, hi; };

const GpLaunchSpec* spec;
std::mt19937_64 rng;
ucontext_t scheduler;
Fiber* current = nullptr;
std::vector<Fiber*> live_fibers;                    // every fiber of a live block
std::vector<Fiber*> buffered;                       // fibers with a non-empty store buffer (may hold stale)
std::vector<Region> regions;                        // modelled memory: buffers and live shared memory
std::vector<Block*> live_blocks;
const size_t kSharedGuard = 1 << 20;
uint64_t now = 0;                                   // memory time: one tick per store made visible
std::unordered_map<uintptr_t, std::vector<std::pair<uint64_t, unsigned char>>> history;  // byte -> (time, value before)
std::vector<std::pair<uintptr_t, unsigned char>> patched;  // bytes showing the current fiber's view
uint64_t hooks = 0;
uint64_t step = 0;                                  // scheduler decisions so far
const uint64_t kMaxHooks = 100000000;  // a spin-wait nobody releases ends as a report, not a hang

bool chance(double p) { return p > 0 && std::uniform_real_distribution<double>(0, 1)(rng) < p; }

bool modelled(uintptr_t a) {
  for (const Region& r : regions)
    if (a >= r.lo && a < r.hi) return true;
  return false;
}

const Block* shared_guard_of(uintptr_t a) {
  for (const Block* b : live_blocks)
    if (a >= (uintptr_t)b->shared_reserved && a < (uintptr_t)b->shared_reserved + b->shared_span) return b;
  return nullptr;
}

void check_bounds(uintptr_t a, size_t n, bool write) {
  if (modelled(a) && modelled(a + n - 1)) return;
  const uintptr_t bad = modelled(a) ? a + n - 1 : a;
  if (gp_guard_of(bad))
    gp_fail("invalid-address", "%zu-byte %s by %s: %s", n, write ? "write" : "read", gp_where(),
            gp_describe_address(bad).c_str());
  if (const Block* b = shared_guard_of(bad)) {
    const long off = (long)(bad - (uintptr_t)b->shared);
    gp_fail("invalid-address", "%zu-byte %s by %s: shared memory offset %ld of block (%u,%u,%u), which has %zu bytes",
            n, write ? "write" : "read", gp_where(), off, b->base.blockIdx.x, b->base.blockIdx.y, b->base.blockIdx.z,
            b->shared_bytes);
  }
}

// memory is "committed" (what every thread would see with no buffering) whenever no fiber is between a hook
// and its next hook; these two undo what the last hook of the current fiber left in memory.
void undo_patches() {
  for (auto it = patched.rbegin(); it != patched.rend(); ++it) *(unsigned char*)it->first = it->second;
  patched.clear();
}

void commit(Fiber* f, const Entry& e) {
  ++now;
  for (unsigned k = 0; k < e.size; ++k) {
    uintptr_t a = e.address + k;
    history[a].push_back({now, *(unsigned char*)a});
    *(unsigned char*)a = e.bytes[k];
    f->floor[a] = now;
  }
}

void forget_if_empty(Fiber* f) {
  if (f->buffer.empty()) buffered.erase(std::remove(buffered.begin(), buffered.end(), f), buffered.end());
}

void drain_overlapping(Fiber* f, uintptr_t a, size_t n) {
  for (size_t k : f->buffer.overlapping(a, n)) {
    commit(f, f->buffer.entries[k]);
    f->buffer.remove(k);
  }
  forget_if_empty(f);
}

void drain_all(Fiber* f) {
  std::shuffle(f->buffer.entries.begin(), f->buffer.entries.end(), rng);  // visible in any order
  for (const Entry& e : f->buffer.entries) commit(f, e);
  f->buffer = StoreBuffer();
  forget_if_empty(f);
}

void capture_store(Fiber* f) {
  if (f->dirty_size == 0) return;
  Entry e{f->dirty, f->dirty_size, {}};
  memcpy(e.bytes, (void*)f->dirty, f->dirty_size);
  memcpy((void*)f->dirty, f->dirty_old, f->dirty_size);  // memory keeps the committed value
  f->dirty_size = 0;
  auto same = f->buffer.at.find(e.address);
  if (same != f->buffer.at.end() && f->buffer.entries[same->second].size == e.size) {
    f->buffer.entries[same->second] = e;  // the newer store to the same word replaces the older
    return;
  }
  // a store overlapping a buffered one of another shape: the older one becomes visible first
  drain_overlapping(f, e.address, e.size);
  if (f->buffer.empty()) buffered.push_back(f);
  f->buffer.add(e);
}

void sync_view() {  // entry of every hook and runtime call from a fiber
  undo_patches();
  if (current) capture_store(current);
}

void switch_point(bool sync = false) {
  if (++hooks > kMaxHooks) gp_fail("hang", "the grid made %lu memory accesses without finishing (a spin-wait nobody releases?)", (unsigned long)kMaxHooks);
  if (chance(spec->p_drain) && !buffered.empty()) {
    Fiber* f = buffered[rng() % buffered.size()];
    size_t k = rng() % f->buffer.size();
    commit(f, f->buffer.entries[k]);
    f->buffer.remove(k);
    forget_if_empty(f);
  }
  // at a fence or atomic, the thread may stall for a while: the window a missing fence leaves open
  if (sync && chance(spec->p_delay)) current->wake_at = step + 1 + rng() % (2 * live_fibers.size());
  swapcontext(&current->context, &scheduler);
}

void show(uintptr_t a, unsigned char value) {
  patched.push_back({a, *(unsigned char*)a});
  *(unsigned char*)a = value;
}

void on_read(uintptr_t a, size_t n) {
  sync_view();
  if (!current) return;
  check_bounds(a, n, false);
  if (!modelled(a)) return;
  if (chance(spec->p_switch)) switch_point();
  Fiber* f = current;
  // the newest time this thread must see for these bytes
  uint64_t floor = f->last_sync;
  for (size_t k = 0; k < n; ++k) {
    auto it = f->floor.find(a + k);
    if (it != f->floor.end()) floor = std::max(floor, it->second);
  }
  const bool stale = chance(spec->p_stale);
  for (size_t k = 0; k < n; ++k) {
    uintptr_t b = a + k;
    auto h = history.find(b);
    if (h == history.end()) continue;
    if (stale) {
      for (auto& [time, before] : h->second)
        if (time > floor) { show(b, before); break; }
    } else {
      f->floor[b] = h->second.back().first;
    }
  }
  for (size_t k : f->buffer.overlapping(a, n)) {  // its own stores
    const Entry& e = f->buffer.entries[k];
    for (unsigned j = 0; j < e.size; ++j)
      if (e.address + j >= a && e.address + j < a + n) {
        // over a stale patch: keep the committed byte as the one to restore
        bool seen = false;
        for (auto& p : patched)
          if (p.first == e.address + j) { *(unsigned char*)p.first = e.bytes[j]; seen = true; }
        if (!seen) show(e.address + j, e.bytes[j]);
      }
  }
}

void on_write(uintptr_t a, size_t n) {
  sync_view();
  if (!current) return;
  check_bounds(a, n, true);
  if (!modelled(a)) return;
  if (chance(spec->p_switch)) switch_point();
  if (n > 16) {  // a wide store: drain what overlaps, let it go straight to memory
    drain_overlapping(current, a, n);
    return;
  }
  current->dirty = a;
  current->dirty_size = (unsigned)n;
  memcpy(current->dirty_old, (void*)a, n);
}

void trampoline() {
  gp_invoke(spec->args);
  sync_view();
  Fiber* f = current;
  Block* b = f->block;
  f->state = Fiber::DONE;
  ++b->exited;
  --b->live;
  if (b->waiting > 0)
    gp_fail("barrier-divergence", "__syncthreads() not reached by every thread of block (%u,%u,%u): thread (%u,%u,%u) exited while %u wait at %s",
            b->base.blockIdx.x, b->base.blockIdx.y, b->base.blockIdx.z, f->ids.threadIdx.x, f->ids.threadIdx.y, f->ids.threadIdx.z, b->waiting, b->site);
  swapcontext(&f->context, &scheduler);
}

const size_t kStack = 256 * 1024;
std::vector<char*> free_stacks;

Block* start_block(uint64_t id) {
  Block* b = new Block;
  b->base.gridDim = spec->grid;
  b->base.blockDim = spec->block;
  b->base.blockIdx = {(unsigned)(id % spec->grid.x), (unsigned)(id / spec->grid.x % spec->grid.y),
                      (unsigned)(id / ((uint64_t)spec->grid.x * spec->grid.y))};
  b->dynamic_offset = (spec->static_shared + 15) / 16 * 16;
  b->shared_bytes = b->dynamic_offset + spec->dynamic_shared;
  // between PROT_NONE guards, its end on the guard: an access past it is a fault, not a heap corruption
  const size_t page = 4096, span = (b->shared_bytes + page - 1) / page * page + page;
  char* reserved = (char*)mmap(nullptr, span + 2 * kSharedGuard, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  mprotect(reserved + kSharedGuard, span, PROT_READ | PROT_WRITE);
  b->shared_reserved = reserved;
  b->shared_span = span + 2 * kSharedGuard;
  b->shared = reserved + kSharedGuard + span - (b->shared_bytes + 15) / 16 * 16;
  regions.push_back({(uintptr_t)b->shared, (uintptr_t)b->shared + b->shared_bytes});
  live_blocks.push_back(b);
  unsigned threads = spec->block.x * spec->block.y * spec->block.z;
  for (unsigned t = 0; t < threads; ++t) {
    Fiber* f = new Fiber;
    f->ids = b->base;
    f->ids.threadIdx = {t % spec->block.x, t / spec->block.x % spec->block.y, t / (spec->block.x * spec->block.y)};
    f->block = b;
    if (free_stacks.empty()) {
      f->stack = (char*)mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    } else {
      f->stack = free_stacks.back();
      free_stacks.pop_back();
    }
    getcontext(&f->context);
    f->context.uc_stack.ss_sp = f->stack;
    f->context.uc_stack.ss_size = kStack;
    f->context.uc_link = nullptr;
    makecontext(&f->context, trampoline, 0);
    b->fibers.push_back(f);
    live_fibers.push_back(f);
  }
  b->live = threads;
  return b;
}

void finish_block(Block* b) {
  // its shared memory goes away: what its threads still buffer there is dropped into it first (their
  // global stores stay buffered: a finished thread's stores still become visible late)
  uintptr_t lo = (uintptr_t)b->shared, hi = lo + b->shared_bytes;
  for (Fiber* f : b->fibers) drain_overlapping(f, lo, hi - lo + 1);
  regions.erase(std::remove_if(regions.begin(), regions.end(), [&](const Region& r) { return r.lo == lo; }), regions.end());
  for (uintptr_t a = lo; a < hi; ++a) history.erase(a);
  for (Fiber* f : b->fibers) {
    live_fibers.erase(std::remove(live_fibers.begin(), live_fibers.end(), f), live_fibers.end());
    free_stacks.push_back(f->stack);
  }
  // buffers of finished threads still drain later: keep the fibers of global stores alive
  for (Fiber* f : b->fibers)
    if (f->buffer.empty()) delete f;
  live_blocks.erase(std::remove(live_blocks.begin(), live_blocks.end(), b), live_blocks.end());
  munmap(b->shared_reserved, b->shared_span);
  delete b;
}

}  // namespace

extern "C" const gp_ids_t* gp_ids() { return &current->ids; }

const char* gp_where() {
  static char text[128];
  if (!current) return "the driver";
  snprintf(text, sizeof text, "thread (%u,%u,%u) of block (%u,%u,%u)", current->ids.threadIdx.x, current->ids.threadIdx.y,
           current->ids.threadIdx.z, current->ids.blockIdx.x, current->ids.blockIdx.y, current->ids.blockIdx.z);
  return text;
}

extern "C" void gp_threadfence() {
  sync_view();
  switch_point();
  drain_all(current);
  current->last_sync = now;
  switch_point(true);
}

extern "C" void gp_syncthreads(const char* site) {
  sync_view();
  Fiber* f = current;
  Block* b = f->block;
  if (b->exited > 0)
    gp_fail("barrier-divergence", "__syncthreads() at %s not reached by every thread of block (%u,%u,%u): %u thread(s) exited before it",
            site, b->base.blockIdx.x, b->base.blockIdx.y, b->base.blockIdx.z, b->exited);
  if (b->waiting == 0) b->site = site;
  else if (b->site != site)
    gp_fail("barrier-divergence", "threads of block (%u,%u,%u) wait at different __syncthreads(): %s and %s",
            b->base.blockIdx.x, b->base.blockIdx.y, b->base.blockIdx.z, b->site, site);
  drain_all(f);
  f->state = Fiber::AT_BARRIER;
  if (++b->waiting == b->fibers.size()) {
    b->waiting = 0;
    for (Fiber* g : b->fibers) {  // a barrier orders memory for the block
      drain_all(g);
      g->state = Fiber::RUNNABLE;
    }
    for (Fiber* g : b->fibers) g->last_sync = now;
  }
  switch_point();
}

extern "C" void gp_atomic(void* address, unsigned size, int op, const void* operand, const void* compare, void* old) {
  sync_view();
  uintptr_t a = (uintptr_t)address;
  check_bounds(a, size, true);
  if (a % size != 0) gp_fail("misaligned-address", "atomic on %s by %s", gp_describe_address(a).c_str(), gp_where());
  switch_point(true);
  Fiber* f = current;
  drain_overlapping(f, a, size);  // its own earlier stores to the word come first
  unsigned char before[8], after[8];
  memcpy(before, address, size);
  memcpy(old, address, size);
  if (size == 4) {
    uint32_t v, x, c; memcpy(&v, before, 4); memcpy(&x, operand, 4); memcpy(&c, compare, 4);
    int32_t sv = (int32_t)v, sx = (int32_t)x;
    float fv, fx; memcpy(&fv, &v, 4); memcpy(&fx, &x, 4);
    uint32_t r = 0;
    switch (op) {
      case GP_ADD_I: r = v + x; break;
      case GP_ADD_F32: fv += fx; memcpy(&r, &fv, 4); break;
      case GP_CAS: r = v == c ? x : v; break;
      case GP_EXCH: r = x; break;
      case GP_MAX_S: r = (uint32_t)std::max(sv, sx); break;
      case GP_MIN_S: r = (uint32_t)std::min(sv, sx); break;
      case GP_MAX_U: r = std::max(v, x); break;
      case GP_MIN_U: r = std::min(v, x); break;
      case GP_AND: r = v & x; break;
      case GP_OR: r = v | x; break;
      case GP_XOR: r = v ^ x; break;
      default: gp_fail("atomic", "no 4-byte atomic op %d", op);
    }
    memcpy(after, &r, 4);
  } else if (size == 8) {
    uint64_t v, x, c; memcpy(&v, before, 8); memcpy(&x, operand, 8); memcpy(&c, compare, 8);
    int64_t sv = (int64_t)v, sx = (int64_t)x;
    double fv, fx; memcpy(&fv, &v, 8); memcpy(&fx, &x, 8);
    uint64_t r = 0;
    switch (op) {
      case GP_ADD_I: r = v + x; break;
      case GP_ADD_F64: fv += fx; memcpy(&r, &fv, 8); break;
      case GP_CAS: r = v == c ? x : v; break;
      case GP_EXCH: r = x; break;
      case GP_MAX_S: r = (uint64_t)std::max(sv, sx); break;
      case GP_MIN_S: r = (uint64_t)std::min(sv, sx); break;
      default: gp_fail("atomic", "no 8-byte atomic op %d", op);
    }
    memcpy(after, &r, 8);
  } else {
    gp_fail("atomic", "no %u-byte atomics", size);
  }
  Entry e{a, size, {}};
  memcpy(e.bytes, after, size);
  commit(f, e);  // straight to memory: an atomic is the location's newest value
}

extern "C" void* gp_static_shared(size_t offset) { return current->block->shared + offset; }

extern "C" void* gp_dynamic_shared() { return current->block->shared + current->block->dynamic_offset; }

void gp_run(const GpLaunchSpec& s) {
  spec = &s;
  rng.seed(s.seed);
  for (const GpBuffer& b : gp_buffers) regions.push_back({(uintptr_t)b.data, (uintptr_t)b.data + b.bytes});
  std::vector<uint64_t> order = s.blocks;
  std::shuffle(order.begin(), order.end(), rng);
  size_t next = 0;
  std::vector<Block*> live;
  for (;;) {
    while ((int)live.size() < std::max(1, s.resident) && next < order.size()) live.push_back(start_block(order[next++]));
    if (live.empty()) break;
    std::vector<Fiber*> runnable, awake;
    for (Fiber* f : live_fibers)
      if (f->state == Fiber::RUNNABLE) {
        runnable.push_back(f);
        if (f->wake_at <= step) awake.push_back(f);
      }
    if (runnable.empty()) gp_fail("deadlock", "no thread of the live blocks can run (all wait at barriers)");
    if (!awake.empty()) runnable.swap(awake);
    ++step;
    current = runnable[rng() % runnable.size()];
    swapcontext(&scheduler, &current->context);
    undo_patches();
    capture_store(current);
    Block* b = current->block;
    current = nullptr;
    if (b->live == 0) {
      finish_block(b);
      live.erase(std::find(live.begin(), live.end(), b));
    }
  }
  for (Fiber* f : std::vector<Fiber*>(buffered)) drain_all(f);  // kernel end: everything visible
}

// ---- the hooks GCC's -fsanitize=thread instrumentation calls (kernel translation unit only) ----
extern "C" {
void __tsan_init() {}
void __tsan_func_entry(void*) {}
void __tsan_func_exit() {}
void __tsan_vptr_update(void*, void*) {}
void __tsan_vptr_read(void*) {}
#define GP_HOOKS(n) \
  void __tsan_read##n(void* a) { on_read((uintptr_t)a, n); } \
  void __tsan_write##n(void* a) { on_write((uintptr_t)a, n); } \
  void __tsan_unaligned_read##n(void* a) { on_read((uintptr_t)a, n); } \
  void __tsan_unaligned_write##n(void* a) { on_write((uintptr_t)a, n); } \
  void __tsan_volatile_read##n(void* a) { on_read((uintptr_t)a, n); } \
  void __tsan_volatile_write##n(void* a) { on_write((uintptr_t)a, n); }
GP_HOOKS(1)
GP_HOOKS(2)
GP_HOOKS(4)
GP_HOOKS(8)
GP_HOOKS(16)
void __tsan_read_range(void* a, unsigned long n) { on_read((uintptr_t)a, n); }
void __tsan_write_range(void* a, unsigned long n) { on_write((uintptr_t)a, n); }
}
