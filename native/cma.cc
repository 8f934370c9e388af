// Cross Memory Attach: process_vm_readv/writev between this process and a peer.
#include "common.h"
#include <cerrno>
#include <sys/uio.h>

namespace mprun {
namespace {

// The kernel moves at most MAX_RW_COUNT (0x7ffff000) bytes per call and may
// return short counts: loop until the whole range has moved.
constexpr size_t kMaxChunk = 0x7ffff000;

template <bool kWrite>
Napi::Value Transfer(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  int pid = info[0].As<Napi::Number>().Int32Value();
  uint64_t remote;
  if (!U64Of(env, info[1], &remote)) return env.Undefined();
  uint8_t* local;
  size_t length;
  if (!BytesOf(env, info[2], &local, &length)) return env.Undefined();
  size_t done = 0;
  while (done < length) {
    size_t n = length - done < kMaxChunk ? length - done : kMaxChunk;
    struct iovec l = {local + done, n};
    struct iovec r = {reinterpret_cast<void*>(remote + done), n};
    ssize_t got = kWrite ? process_vm_writev(pid, &l, 1, &r, 1, 0) : process_vm_readv(pid, &l, 1, &r, 1, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return ThrowErrno(env, "ERR_MPRUN_SYSTEM", errno, kWrite ? "process_vm_writev" : "process_vm_readv");
    }
    if (got == 0) return ThrowErrno(env, "ERR_MPRUN_SYSTEM", EFAULT, kWrite ? "process_vm_writev" : "process_vm_readv", "no progress");
    done += static_cast<size_t>(got);
  }
  return Napi::Number::New(env, static_cast<double>(done));
}

}  // namespace

void InitCma(Napi::Env env, Napi::Object exports) {
  exports.Set("cmaRead", Napi::Function::New(env, Transfer<false>));
  exports.Set("cmaWrite", Napi::Function::New(env, Transfer<true>));
}

}  // namespace mprun
