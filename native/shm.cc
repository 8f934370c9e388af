// Shared-memory segments: memfd (or POSIX shm unlinked at once, so nothing is
// ever left in /dev/shm), peers' segments opened through /proc/<pid>/fd/<n>,
// and mappings exposed to JS as external ArrayBuffers.
//
// The ArrayBuffers are made with V8's API, over a backing store with V8's empty
// deleter, and unmapped by a Node-API finalizer on the buffer object (or by
// release()). Why not napi_create_external_arraybuffer: V8 counts such a
// buffer's bytes as external memory and starts full GCs as they grow, though a
// mapping of a peer's heap costs no memory of ours; a rank attaching 31 peers'
// heaps (256 MiB) and arenas ran 14 mark-compacts during init, ~110 at 255
// ranks (issue 13: startup grew quadratically). V8 does not count buffers
// whose deleter is empty.
#include "common.h"
#include <v8.h>
#include <cerrno>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <string>
#include <unordered_map>

namespace mprun {

namespace {

struct Mapping {
  void* addr;
  size_t length;
  UnmapFn unmap;
  void* hint;
  int fd;          // the fd this process exports the segment under, or -1
  bool released;
};

// Live mappings by base address: lets release() find a mapping from its
// ArrayBuffer, and lets locate() tell whether a view lies in an exported segment.
std::unordered_map<void*, Mapping*> mappings;

void Finalize(napi_env, void* data, void*) {
  auto* m = static_cast<Mapping*>(data);
  if (!m->released) {
    m->released = true;
    m->unmap(m->addr, m->length, m->hint);
    auto it = mappings.find(m->addr);
    if (it != mappings.end() && it->second == m) mappings.erase(it);
  }
  delete m;
}

void Munmap(void* addr, size_t length, void*) { munmap(addr, length); }

// The longest external ArrayBuffer Node.js makes: buffer.constants.MAX_LENGTH,
// set by the loader (native/index.ts) through setMaxMapping(); 4 GiB in Node 20.
// Longer ones fail inside napi_create_external_arraybuffer, and on that path
// Node.js has already run the finalizer when node-addon-api deletes its
// finalizer data again: "free(): double free detected in tcache 2" (issue 13).
// So a longer mapping is refused here, before any ArrayBuffer is made.
uint64_t maxMapping = uint64_t{1} << 32;

Napi::ArrayBuffer Wrap(Napi::Env env, void* addr, size_t length, UnmapFn unmap, void* hint, int fd) {
  if (length > maxMapping) {
    unmap(addr, length, hint);
    ThrowCode(env, "ERR_MPRUN_ARG",
              "cannot map " + std::to_string(length) + " bytes as one buffer: Node.js holds at most " + std::to_string(maxMapping) +
                  " bytes in an external ArrayBuffer (buffer.constants.MAX_LENGTH)");
    return Napi::ArrayBuffer();
  }
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  std::shared_ptr<v8::BackingStore> store = v8::ArrayBuffer::NewBackingStore(addr, length, v8::BackingStore::EmptyDeleter, nullptr);
  v8::Local<v8::ArrayBuffer> ab = v8::ArrayBuffer::New(isolate, std::move(store));
  // A napi_value is a v8::Local's handle (Node's v8impl::JsValueFromV8LocalValue);
  // the callback's handle scope keeps it alive.
  napi_value value = reinterpret_cast<napi_value>(*ab);
  auto* m = new Mapping{addr, length, unmap, hint, fd, false};
  if (napi_add_finalizer(env, value, m, Finalize, nullptr, nullptr) != napi_ok) {
    unmap(addr, length, hint);
    delete m;
    ThrowCode(env, "ERR_MPRUN_SYSTEM", "napi_add_finalizer failed on a mapping");
    return Napi::ArrayBuffer();
  }
  mappings[addr] = m;
  return Napi::ArrayBuffer(env, value);
}

Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  std::string name = info[0].As<Napi::String>();
  uint64_t size;
  if (!U64Of(env, info[1], &size)) return env.Undefined();
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) return ThrowErrno(env, "ERR_MPRUN_SYSTEM", errno, "memfd_create");
  // memfd starts as 0777 & ~umask; peers reach it only through /proc/<pid>/fd,
  // which checks ptrace access, but the mode is narrowed anyway.
  if (fchmod(fd, 0600) != 0 || ftruncate(fd, static_cast<off_t>(size)) != 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, "ERR_MPRUN_SYSTEM", err, "ftruncate", name);
  }
  return Napi::Number::New(env, fd);
}

// POSIX shm fallback for kernels without memfd: created 0600 and unlinked at
// once, so that no exit path can leave a file in /dev/shm.
Napi::Value ShmCreate(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  std::string name = info[0].As<Napi::String>();
  uint64_t size;
  if (!U64Of(env, info[1], &size)) return env.Undefined();
  std::string path = "/" + name;
  int fd = shm_open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return ThrowErrno(env, "ERR_MPRUN_SYSTEM", errno, "shm_open", path);
  shm_unlink(path.c_str());
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, "ERR_MPRUN_SYSTEM", err, "ftruncate", path);
  }
  return Napi::Number::New(env, fd);
}

// Opens another process's segment by the fd it exported it under. Access is
// checked by the kernel (ptrace read access to that process: same user).
Napi::Value OpenPeerFd(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  int pid = info[0].As<Napi::Number>().Int32Value();
  int peerFd = info[1].As<Napi::Number>().Int32Value();
  std::string path = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(peerFd);
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return ThrowErrno(env, "ERR_MPRUN_SYSTEM", errno, "open", path);
  return Napi::Number::New(env, fd);
}

Napi::Value FdSize(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  struct stat st;
  if (fstat(info[0].As<Napi::Number>().Int32Value(), &st) != 0) return ThrowErrno(env, "ERR_MPRUN_SYSTEM", errno, "fstat");
  return Napi::Number::New(env, static_cast<double>(st.st_size));
}

// mapFd(fd, offset, length, exportedFd) -> ArrayBuffer over MAP_SHARED memory.
Napi::Value MapFd(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  uint64_t offset, length;
  if (!U64Of(env, info[1], &offset) || !U64Of(env, info[2], &length)) return env.Undefined();
  int exported = info.Length() > 3 ? info[3].As<Napi::Number>().Int32Value() : -1;
  if (length == 0) return ThrowCode(env, "ERR_MPRUN_ARG", "cannot map a zero-length range");
  void* p = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(offset));
  if (p == MAP_FAILED) return ThrowErrno(env, "ERR_MPRUN_SYSTEM", errno, "mmap");
  return Wrap(env, p, length, Munmap, nullptr, exported);
}

Napi::Value Release(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), ReleaseMapping(info.Env(), info[0]));
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  close(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

// locate(view) -> [exportedFd, offsetInMapping, mappingLength] when the view
// lies inside a live mapping of this process, else null.
Napi::Value Locate(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  uint8_t* data;
  size_t length;
  if (!BytesOf(env, info[0], &data, &length)) return env.Undefined();
  for (auto& [base, m] : mappings) {
    auto* b = static_cast<uint8_t*>(base);
    if (data >= b && data + length <= b + m->length) {
      auto arr = Napi::Array::New(env, 3);
      arr.Set(0u, Napi::Number::New(env, m->fd));
      arr.Set(1u, Napi::Number::New(env, static_cast<double>(data - b)));
      arr.Set(2u, Napi::Number::New(env, static_cast<double>(m->length)));
      return arr;
    }
  }
  return env.Null();
}

Napi::Value AddressOf(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  uint8_t* data;
  size_t length;
  if (!BytesOf(env, info[0], &data, &length)) return env.Undefined();
  return Napi::BigInt::New(env, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(data)));
}

Napi::Value SetMaxMapping(const Napi::CallbackInfo& info) {
  uint64_t v;
  if (!U64Of(info.Env(), info[0], &v)) return info.Env().Undefined();
  maxMapping = v;
  return info.Env().Undefined();
}

Napi::Value MaxMapping(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(maxMapping));
}

Napi::Value PageSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(sysconf(_SC_PAGESIZE)));
}

}  // namespace

Napi::ArrayBuffer WrapMapping(Napi::Env env, void* addr, size_t length, UnmapFn unmap, void* hint) {
  return Wrap(env, addr, length, unmap, hint, -1);
}

bool ReleaseMapping(Napi::Env env, Napi::Value buffer) {
  if (!buffer.IsArrayBuffer()) return false;
  auto ab = buffer.As<Napi::ArrayBuffer>();
  void* addr = ab.Data();
  auto it = mappings.find(addr);
  if (it == mappings.end() || it->second->released) return false;
  Mapping* m = it->second;
  mappings.erase(it);
  // Detach first: every view of the buffer becomes length 0, so no JS code
  // can touch the range once it is unmapped.
  napi_detach_arraybuffer(env, ab);
  m->released = true;
  m->unmap(m->addr, m->length, m->hint);
  return true;
}

void InitShm(Napi::Env env, Napi::Object exports) {
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate));
  exports.Set("shmCreate", Napi::Function::New(env, ShmCreate));
  exports.Set("openPeerFd", Napi::Function::New(env, OpenPeerFd));
  exports.Set("fdSize", Napi::Function::New(env, FdSize));
  exports.Set("mapFd", Napi::Function::New(env, MapFd));
  exports.Set("release", Napi::Function::New(env, Release));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("locate", Napi::Function::New(env, Locate));
  exports.Set("addressOf", Napi::Function::New(env, AddressOf));
  exports.Set("pageSize", Napi::Function::New(env, PageSize));
  exports.Set("setMaxMapping", Napi::Function::New(env, SetMaxMapping));
  exports.Set("maxMapping", Napi::Function::New(env, MaxMapping));
}

}  // namespace mprun
