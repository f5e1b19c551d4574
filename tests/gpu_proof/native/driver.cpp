// One kernel launch on the host, described by a launch file that tests/gpu_proof/executor.py writes:
//   grid X Y Z / block X Y Z / dynamic_shared N / seed S / resident R / weak P_STALE P_SWITCH P_DRAIN P_DELAY /
//   guard BYTES / buffer NAME PATH BYTES HEAP(0|1) PAD / arg NBYTES HEX / reloc ARG OFFSET BUFFER OFFSET /
//   blocks all | blocks N ID...
// Buffers are files mapped MAP_SHARED between PROT_NONE guards (sparse files: only touched pages exist), so
// the kernel's writes are in the files when it exits; HEAP buffers (the ASan build) are copied into malloc'd
// memory for AddressSanitizer's redzones and copied back. Exit 0 and "GP-OK" when the grid finished; a
// fault is one "GP-ERROR kind: message" line on stderr and exit 70.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <tuple>

#include "runtime.h"

std::vector<GpBuffer> gp_buffers;
static std::vector<std::pair<char*, char*>> heap_copies;  // (heap copy, file mapping) of HEAP buffers

void gp_fail(const char* kind, const char* fmt, ...) {
  char message[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  fprintf(stderr, "GP-ERROR %s: %s\n", kind, message);
  fflush(stderr);
  _exit(70);
}

const GpBuffer* gp_guard_of(uintptr_t a) {
  for (const GpBuffer& b : gp_buffers)
    if (a >= (uintptr_t)b.reserved && a < (uintptr_t)b.reserved + b.reserved_bytes) return &b;
  return nullptr;
}

std::string gp_describe_address(uintptr_t a) {
  char text[512];
  const GpBuffer* b = gp_guard_of(a);
  if (b == nullptr) {
    snprintf(text, sizeof text, "0x%lx is in no buffer of this launch", (unsigned long)a);
  } else if (a < (uintptr_t)b->data) {
    snprintf(text, sizeof text, "0x%lx is %lu bytes before buffer '%s' (%lu bytes)", (unsigned long)a,
             (unsigned long)((uintptr_t)b->data - a), b->name.c_str(), (unsigned long)b->bytes);
  } else {
    snprintf(text, sizeof text, "0x%lx is %lu bytes past the end of buffer '%s' (%lu bytes)", (unsigned long)a,
             (unsigned long)(a - (uintptr_t)b->data - b->bytes), b->name.c_str(), (unsigned long)b->bytes);
  }
  return text;
}

static void on_fault(int, siginfo_t* info, void* context) {
  const ucontext_t* uc = (const ucontext_t*)context;
  const bool write = (uc->uc_mcontext.gregs[REG_ERR] & 2) != 0;
  std::string where = gp_describe_address((uintptr_t)info->si_addr);
  // async-signal context: the process ends right here, so the formatting functions are acceptable
  fprintf(stderr, "GP-ERROR invalid-address: %s by %s: %s\n", write ? "write" : "read", gp_where(), where.c_str());
  fflush(stderr);
  _exit(70);
}

static void install_fault_handler() {
  static char stack[1 << 16];
  stack_t ss = {};
  ss.ss_sp = stack;
  ss.ss_size = sizeof stack;
  sigaltstack(&ss, nullptr);
  struct sigaction sa = {};
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigaction(SIGSEGV, &sa, nullptr);
  sigaction(SIGBUS, &sa, nullptr);
}

static void map_buffer(const std::string& name, const std::string& path, size_t bytes, bool heap, size_t pad,
                       size_t guard) {
  const size_t page = 4096;
  const size_t span = pad + bytes;  // the file: pad bytes, then the data ending on a page boundary
  if (span % page != 0) gp_fail("launch-file", "buffer %s: pad %zu + %zu bytes is not whole pages", name.c_str(), pad, bytes);
  char* reserved = (char*)mmap(nullptr, span + 2 * guard, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (reserved == MAP_FAILED) gp_fail("launch-file", "cannot reserve %zu bytes for buffer %s", span + 2 * guard, name.c_str());
  int fd = open(path.c_str(), O_RDWR);
  if (fd < 0) gp_fail("launch-file", "cannot open %s", path.c_str());
  char* file = (char*)mmap(reserved + guard, span, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | MAP_NORESERVE, fd, 0);
  close(fd);
  if (file == MAP_FAILED) gp_fail("launch-file", "cannot map %s", path.c_str());
  madvise(file, span, MADV_RANDOM);  // no readahead: a sparse 8 GiB buffer must cost only the pages touched
  char* data = file + pad;
  if (heap) {
    char* copy = (char*)malloc(bytes ? bytes : 1);
    memcpy(copy, data, bytes);
    heap_copies.push_back({copy, data});
    data = copy;
  }
  gp_buffers.push_back({name, data, bytes, reserved, span + 2 * guard});
}

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--query") {
    printf("static_shared %lu\nparam_sizes", gp_static_shared_bytes);
    for (unsigned long k = 0; k < gp_param_count; ++k) printf(" %lu", gp_param_sizes[k]);
    printf("\n");
    return 0;
  }
  if (argc != 2) gp_fail("usage", "driver LAUNCH_FILE | driver --query");
  std::ifstream in(argv[1]);
  if (!in) gp_fail("launch-file", "cannot read %s", argv[1]);
  GpLaunchSpec spec;
  spec.grid = spec.block = {1, 1, 1};
  size_t guard = 1 << 16;
  std::vector<std::vector<unsigned char>> args;
  std::vector<std::tuple<size_t, size_t, size_t, size_t>> relocs;
  bool all_blocks = true;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string key;
    if (!(words >> key)) continue;
    if (key == "grid") words >> spec.grid.x >> spec.grid.y >> spec.grid.z;
    else if (key == "block") words >> spec.block.x >> spec.block.y >> spec.block.z;
    else if (key == "dynamic_shared") words >> spec.dynamic_shared;
    else if (key == "seed") words >> spec.seed;
    else if (key == "resident") words >> spec.resident;
    else if (key == "weak") words >> spec.p_stale >> spec.p_switch >> spec.p_drain >> spec.p_delay;
    else if (key == "guard") words >> guard;
    else if (key == "buffer") {
      std::string name, path;
      size_t bytes, pad;
      int heap;
      words >> name >> path >> bytes >> heap >> pad;
      map_buffer(name, path, bytes, heap != 0, pad, guard);
    } else if (key == "arg") {
      size_t n;
      std::string hex;
      words >> n >> hex;
      std::vector<unsigned char> blob(n);
      for (size_t k = 0; k < n; ++k) blob[k] = (unsigned char)std::stoul(hex.substr(2 * k, 2), nullptr, 16);
      args.push_back(blob);
    } else if (key == "reloc") {
      size_t a, off, b, boff;
      words >> a >> off >> b >> boff;
      relocs.emplace_back(a, off, b, boff);
    } else if (key == "blocks") {
      std::string what;
      words >> what;
      if (what != "all") {
        all_blocks = false;
        size_t n = std::stoul(what);
        spec.blocks.resize(n);
        for (size_t k = 0; k < n; ++k) words >> spec.blocks[k];
      }
    } else gp_fail("launch-file", "unknown line: %s", line.c_str());
  }
  for (auto [a, off, b, boff] : relocs) {
    char* pointer = gp_buffers.at(b).data + boff;
    memcpy(args.at(a).data() + off, &pointer, sizeof pointer);
  }
  // each argument in its own 16-byte-aligned storage, as the driver API copies kernelParams
  std::vector<void*> argv_storage;
  for (auto& blob : args) {
    void* p = aligned_alloc(16, (blob.size() + 15) / 16 * 16);
    memcpy(p, blob.data(), blob.size());
    argv_storage.push_back(p);
  }
  spec.args = argv_storage.data();
  spec.static_shared = gp_static_shared_bytes;
  if (all_blocks) {
    uint64_t n = (uint64_t)spec.grid.x * spec.grid.y * spec.grid.z;
    spec.blocks.resize(n);
    for (uint64_t k = 0; k < n; ++k) spec.blocks[k] = k;
  }
  install_fault_handler();
  gp_run(spec);
  for (auto [copy, file] : heap_copies) {
    const GpBuffer* b = nullptr;
    for (const GpBuffer& g : gp_buffers)
      if (g.data == copy) b = &g;
    memcpy(file, copy, b->bytes);
    free(copy);
  }
  for (void* p : argv_storage) free(p);
  printf("GP-OK\n");
  return 0;
}
