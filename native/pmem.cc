// Persistent memory for the rpmem target daemon, and CRC32C for checkpoints.
//
// Pool parts are mapped through libpmem (pmem_map_file) when libpmem.so.1 is
// installed (Debian's libpmem1/libpmem-dev), else with plain mmap. A persist is
// pmem_persist when the range is real pmem, pmem_msync otherwise (msync without
// libpmem), and its result is returned, never swallowed: the daemon acknowledges
// a persist only when this returned success (PMDK's rpmemd does not: rpmemd_fip.c
// calls its persist and ignores the result, so a failed msync was acknowledged).
// libpmem is opened with dlopen so that the addon builds and runs without it.
#include "common.h"
#include <cerrno>
#include <cstring>
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace mprun {

namespace {

// ---- CRC32C (Castagnoli): SSE4.2 crc32 instructions when the CPU has them. ----

uint32_t crcTable[8][256];

void InitCrcTable() {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    crcTable[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++) {
    for (int t = 1; t < 8; t++) crcTable[t][i] = (crcTable[t - 1][i] >> 8) ^ crcTable[0][crcTable[t - 1][i] & 0xff];
  }
}

uint32_t Crc32cTable(uint32_t crc, const uint8_t* p, size_t n) {
  while (n >= 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    v ^= crc;
    crc = crcTable[7][v & 0xff] ^ crcTable[6][(v >> 8) & 0xff] ^ crcTable[5][(v >> 16) & 0xff] ^ crcTable[4][(v >> 24) & 0xff] ^
          crcTable[3][(v >> 32) & 0xff] ^ crcTable[2][(v >> 40) & 0xff] ^ crcTable[1][(v >> 48) & 0xff] ^ crcTable[0][v >> 56];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) crc = (crc >> 8) ^ crcTable[0][(crc ^ *p++) & 0xff];
  return crc;
}

// Shifting a CRC over zeros: the operator that appends `len` zero bytes to a
// raw CRC state is linear over GF(2), a 32x32 bit matrix; applying it to a
// state is four table lookups once tabulated per byte position. Three streams
// of CRC instructions then run interleaved (the instruction's latency is three
// cycles, its throughput one per cycle) and are joined by shifting: the first
// stream's state over the second's bytes, xor the second's, and so on.
uint32_t Gf2Times(const uint32_t* mat, uint32_t vec) {
  uint32_t sum = 0;
  for (; vec != 0; vec >>= 1, mat++) {
    if (vec & 1) sum ^= *mat;
  }
  return sum;
}

void Gf2Square(uint32_t* square, const uint32_t* mat) {
  for (int n = 0; n < 32; n++) square[n] = Gf2Times(mat, mat[n]);
}

// The operator for `len` zero bytes; `len` a power of two.
void ZerosOperator(uint32_t* op, size_t len) {
  uint32_t odd[32], even[32];
  odd[0] = 0x82F63B78u;  // one zero bit
  for (int n = 1; n < 32; n++) odd[n] = 1u << (n - 1);
  Gf2Square(even, odd);  // two zero bits
  Gf2Square(odd, even);  // four
  uint32_t* cur = odd;
  // Each square doubles the zeros: eight bits (one byte) first, then two bytes, ...
  while (true) {
    uint32_t* next = cur == odd ? even : odd;
    Gf2Square(next, cur);
    cur = next;
    len >>= 1;
    if (len == 0) break;
  }
  memcpy(op, cur, sizeof odd);
}

struct ZerosTable {
  uint32_t t[4][256];
  explicit ZerosTable(size_t len) {
    uint32_t op[32];
    ZerosOperator(op, len);
    for (uint32_t n = 0; n < 256; n++) {
      for (int k = 0; k < 4; k++) t[k][n] = Gf2Times(op, n << (8 * k));
    }
  }
  uint32_t Shift(uint32_t crc) const { return t[0][crc & 0xff] ^ t[1][(crc >> 8) & 0xff] ^ t[2][(crc >> 16) & 0xff] ^ t[3][crc >> 24]; }
};

constexpr size_t kLongBlock = 8192, kShortBlock = 256;
const ZerosTable* longZeros = nullptr;
const ZerosTable* shortZeros = nullptr;

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint64_t Crc8(uint64_t c, const uint8_t* p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return __builtin_ia32_crc32di(c, v);
}

// Three interleaved streams over blocks of `block` bytes each, joined by `zeros`.
__attribute__((target("sse4.2"))) uint64_t Crc3Way(uint64_t c0, const uint8_t*& p, size_t& n, size_t block, const ZerosTable& zeros) {
  while (n >= 3 * block) {
    uint64_t c1 = 0, c2 = 0;
    for (const uint8_t* end = p + block; p < end; p += 8) {
      c0 = Crc8(c0, p);
      c1 = Crc8(c1, p + block);
      c2 = Crc8(c2, p + 2 * block);
    }
    c0 = zeros.Shift(static_cast<uint32_t>(c0)) ^ c1;
    c0 = zeros.Shift(static_cast<uint32_t>(c0)) ^ c2;
    p += 2 * block;
    n -= 3 * block;
  }
  return c0;
}

// About 3 bytes per cycle on large buffers (one stream: 8 bytes per 3 cycles).
__attribute__((target("sse4.2"))) uint32_t Crc32cHw(uint32_t crc, const uint8_t* p, size_t n) {
  uint64_t c = crc;
  c = Crc3Way(c, p, n, kLongBlock, *longZeros);
  c = Crc3Way(c, p, n, kShortBlock, *shortZeros);
  for (; n >= 8; p += 8, n -= 8) c = Crc8(c, p);
  uint32_t c32 = static_cast<uint32_t>(c);
  while (n-- > 0) c32 = __builtin_ia32_crc32qi(c32, *p++);
  return c32;
}
#endif

bool hwCrc = false;

}  // namespace

uint32_t Crc32c(uint32_t crc, const uint8_t* p, size_t n) {
  crc = ~crc;
#if defined(__x86_64__)
  if (hwCrc) return ~Crc32cHw(crc, p, n);
#endif
  return ~Crc32cTable(crc, p, n);
}

namespace {

// crc32c(bytes, seed = 0) -> uint32; chaining: crc32c(b, crc32c(a)) == crc32c(a ++ b).
Napi::Value Crc32cJs(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  uint8_t* data;
  size_t length;
  if (!BytesOf(env, info[0], &data, &length)) return env.Undefined();
  uint32_t seed = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 0;
  return Napi::Number::New(env, Crc32c(seed, data, length));
}

// ---- libpmem, when installed ----

struct Libpmem {
  void* handle = nullptr;
  void* (*map_file)(const char*, size_t, int, mode_t, size_t*, int*) = nullptr;
  int (*unmap)(void*, size_t) = nullptr;
  void (*persist)(const void*, size_t) = nullptr;
  int (*msync)(const void*, size_t) = nullptr;
  int (*deep_persist)(const void*, size_t) = nullptr;
  const char* (*check_version)(unsigned, unsigned) = nullptr;
  std::string error;
};
constexpr int PMEM_FILE_CREATE = 1 << 0;
constexpr int PMEM_FILE_EXCL = 1 << 1;

Libpmem& Pmem() {
  static Libpmem lib = [] {
    Libpmem l;
    if (getenv("MPRUN_NO_LIBPMEM") != nullptr) {
      l.error = "disabled by MPRUN_NO_LIBPMEM";
      return l;
    }
    l.handle = dlopen("libpmem.so.1", RTLD_NOW | RTLD_LOCAL);
    if (l.handle == nullptr) {
      const char* e = dlerror();
      l.error = e != nullptr ? e : "dlopen failed";
      return l;
    }
    l.map_file = reinterpret_cast<decltype(l.map_file)>(dlsym(l.handle, "pmem_map_file"));
    l.unmap = reinterpret_cast<decltype(l.unmap)>(dlsym(l.handle, "pmem_unmap"));
    l.persist = reinterpret_cast<decltype(l.persist)>(dlsym(l.handle, "pmem_persist"));
    l.msync = reinterpret_cast<decltype(l.msync)>(dlsym(l.handle, "pmem_msync"));
    l.deep_persist = reinterpret_cast<decltype(l.deep_persist)>(dlsym(l.handle, "pmem_deep_persist"));
    l.check_version = reinterpret_cast<decltype(l.check_version)>(dlsym(l.handle, "pmem_check_version"));
    if (!l.map_file || !l.unmap || !l.persist || !l.msync || !l.deep_persist) {
      l.error = "libpmem.so.1 lacks pmem_map_file/pmem_persist/pmem_msync/pmem_deep_persist";
      dlclose(l.handle);
      l.handle = nullptr;
    } else if (l.check_version != nullptr && l.check_version(1, 0) != nullptr) {
      l.error = l.check_version(1, 0);
      dlclose(l.handle);
      l.handle = nullptr;
    }
    return l;
  }();
  return lib;
}

// pmemInfo() -> { libpmem: boolean, reason: string }
Napi::Value PmemInfo(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto& l = Pmem();
  auto o = Napi::Object::New(env);
  o.Set("libpmem", l.handle != nullptr);
  o.Set("reason", l.handle != nullptr ? std::string("libpmem.so.1") : l.error);
  return o;
}

struct PoolMapping {
  bool viaPmem;
  int fd;  // kept for the lanes (pwrite, sync_file_range); closed with the mapping
};

void UnmapPool(void* addr, size_t length, void* hint) {
  auto* pm = static_cast<PoolMapping*>(hint);
  if (pm->viaPmem) Pmem().unmap(addr, length);
  else munmap(addr, length);
  if (pm->fd >= 0) close(pm->fd);
  delete pm;
}

// poolMap(path, length, create) -> { buffer, isPmem, via }
// create: the file must not exist; it is made 0600 and its space allocated now
// (posix_fallocate), so that a full disk fails here and never as SIGBUS during
// a later store. Open: the file must be exactly `length` bytes.
Napi::Value PoolMap(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  std::string path = info[0].As<Napi::String>();
  uint64_t length;
  if (!U64Of(env, info[1], &length)) return env.Undefined();
  bool create = info[2].ToBoolean();
  if (length == 0) return ThrowCode(env, "ERR_MPRUN_ARG", "cannot map a zero-length pool part");
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0), 0600);
  if (fd < 0) return ThrowErrno(env, "ERR_MPRUN_SYSTEM", errno, "open", path);
  if (create) {
    int err = posix_fallocate(fd, 0, static_cast<off_t>(length));
    if (err != 0) {
      close(fd);
      unlink(path.c_str());
      return ThrowErrno(env, "ERR_MPRUN_SYSTEM", err, "posix_fallocate", path);
    }
  } else {
    struct stat st;
    if (fstat(fd, &st) != 0) {
      int err = errno;
      close(fd);
      return ThrowErrno(env, "ERR_MPRUN_SYSTEM", err, "fstat", path);
    }
    if (static_cast<uint64_t>(st.st_size) != length) {
      close(fd);
      return ThrowErrno(env, "ERR_MPRUN_SYSTEM", EINVAL, "open", path + " is not the size its pool set says");
    }
  }
  auto& l = Pmem();
  void* addr = nullptr;
  int isPmem = 0;
  bool viaPmem = l.handle != nullptr;
  if (viaPmem) {
    // Without PMEM_FILE_CREATE libpmem maps the whole file (len must be 0).
    size_t mapped = 0;
    addr = l.map_file(path.c_str(), 0, 0, 0600, &mapped, &isPmem);
    if (addr == nullptr) {
      int err = errno;
      close(fd);
      return ThrowErrno(env, "ERR_MPRUN_SYSTEM", err, "pmem_map_file", path);
    }
    if (mapped != length) {
      l.unmap(addr, mapped);
      close(fd);
      return ThrowErrno(env, "ERR_MPRUN_SYSTEM", EINVAL, "pmem_map_file", path + " is not the size its pool set says");
    }
  } else {
    addr = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (addr == MAP_FAILED) {
      int err = errno;
      close(fd);
      return ThrowErrno(env, "ERR_MPRUN_SYSTEM", err, "mmap", path);
    }
  }
  // Fault the page cache in now (best effort): stores from the lanes then cost
  // a copy, not a page fault per 4 KiB.
  madvise(addr, length, MADV_POPULATE_WRITE);
  auto o = Napi::Object::New(env);
  auto buffer = WrapMapping(env, addr, length, UnmapPool, new PoolMapping{viaPmem, fd});
  if (env.IsExceptionPending()) return env.Undefined();  // too long for one buffer: unmapped, fd closed
  o.Set("buffer", buffer);
  o.Set("fd", fd);
  o.Set("isPmem", isPmem != 0);
  o.Set("via", viaPmem ? "libpmem" : "mmap");
  return o;
}

}  // namespace

// The persist itself: 0 or an errno. msync needs a page-aligned start.
int PersistRange(uint8_t* base, uint64_t offset, uint64_t length, bool isPmem, bool deep) {
  if (length == 0) return 0;
  auto& l = Pmem();
  uint8_t* p = base + offset;
  if (l.handle != nullptr) {
    if (deep) return l.deep_persist(p, length) == 0 ? 0 : (errno != 0 ? errno : EIO);
    if (isPmem) {
      l.persist(p, length);
      return 0;
    }
    return l.msync(p, length) == 0 ? 0 : (errno != 0 ? errno : EIO);
  }
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  uintptr_t start = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  size_t len = reinterpret_cast<uintptr_t>(p) + length - start;
  return msync(reinterpret_cast<void*>(start), len, MS_SYNC) == 0 ? 0 : errno;
}

namespace {

bool RangeOf(Napi::Env env, const Napi::CallbackInfo& info, uint8_t** base, uint64_t* offset, uint64_t* length) {
  if (!info[0].IsArrayBuffer()) {
    Napi::TypeError::New(env, "expected the pool part's ArrayBuffer").ThrowAsJavaScriptException();
    return false;
  }
  auto ab = info[0].As<Napi::ArrayBuffer>();
  if (!U64Of(env, info[1], offset) || !U64Of(env, info[2], length)) return false;
  if (*offset > ab.ByteLength() || *length > ab.ByteLength() - *offset) {
    Napi::RangeError::New(env, "persist range outside the mapping").ThrowAsJavaScriptException();
    return false;
  }
  *base = static_cast<uint8_t*>(ab.Data());
  return true;
}

// poolPersist(buffer, offset, length, isPmem, deep) -> errno name or null.
// Returns the failure rather than throwing: the caller poisons the pool.
Napi::Value PoolPersist(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  uint8_t* base;
  uint64_t offset, length;
  if (!RangeOf(env, info, &base, &offset, &length)) return env.Undefined();
  int err = PersistRange(base, offset, length, info[3].ToBoolean(), info[4].ToBoolean());
  return err == 0 ? env.Null() : Napi::String::New(env, ErrnoName(err));
}

// fsyncPath(path): makes a directory entry (create, unlink) durable.
Napi::Value FsyncPath(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  std::string path = info[0].As<Napi::String>();
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ThrowErrno(env, "ERR_MPRUN_SYSTEM", errno, "open", path);
  int r = fsync(fd);
  int err = errno;
  close(fd);
  if (r != 0) return ThrowErrno(env, "ERR_MPRUN_SYSTEM", err, "fsync", path);
  return env.Undefined();
}

// lockPool(path) -> fd holding an exclusive flock on path (released when the fd
// is closed or the process dies, so a crashed daemon leaves no stale lock).
// Throws with errno EAGAIN when another process holds it.
Napi::Value LockPool(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  std::string path = info[0].As<Napi::String>();
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ThrowErrno(env, "ERR_MPRUN_SYSTEM", errno, "open", path);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno == EWOULDBLOCK ? EAGAIN : errno;
    close(fd);
    return ThrowErrno(env, "ERR_MPRUN_SYSTEM", err, "flock", path);
  }
  return Napi::Number::New(env, fd);
}

}  // namespace

void InitPmem(Napi::Env env, Napi::Object exports) {
  InitCrcTable();
  // Built once per process (worker threads load the addon too; these never change).
  static const ZerosTable longTable(kLongBlock), shortTable(kShortBlock);
  longZeros = &longTable;
  shortZeros = &shortTable;
#if defined(__x86_64__)
  __builtin_cpu_init();
  hwCrc = __builtin_cpu_supports("sse4.2");
#endif
  exports.Set("crc32c", Napi::Function::New(env, Crc32cJs));
  exports.Set("pmemInfo", Napi::Function::New(env, PmemInfo));
  exports.Set("poolMap", Napi::Function::New(env, PoolMap));
  exports.Set("poolPersist", Napi::Function::New(env, PoolPersist));
  exports.Set("fsyncPath", Napi::Function::New(env, FsyncPath));
  exports.Set("lockPool", Napi::Function::New(env, LockPool));
}

}  // namespace mprun
