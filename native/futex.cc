// Futex wait/wake on 32-bit words in shared (MAP_SHARED) memory. Node 20 has no
// Atomics.wait on memory that is not a SharedArrayBuffer, so blocking is here.
// Never use a futex on an XPMEM attachment: get_user_pages fails there (EFAULT).
#include "words.h"
#include <cerrno>
#include <climits>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

namespace mprun {
namespace {

int32_t* WordAt(Napi::Env env, const Napi::CallbackInfo& info) {
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    Napi::TypeError::New(env, "futex word must be in an Int32Array").ThrowAsJavaScriptException();
    return nullptr;
  }
  auto ta = info[0].As<Napi::Int32Array>();
  uint32_t index = info[1].As<Napi::Number>().Uint32Value();
  if (index >= ta.ElementLength()) {
    Napi::RangeError::New(env, "futex index out of range").ThrowAsJavaScriptException();
    return nullptr;
  }
  return ta.Data() + index;
}

// futexWait(i32, index, expected, timeoutMs) -> 0 woken (or spurious), 1 value
// differed, 2 timed out. A negative timeout waits without a bound.
Napi::Value Wait(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  int32_t* word = WordAt(env, info);
  if (word == nullptr) return env.Undefined();
  int32_t expected = info[2].As<Napi::Number>().Int32Value();
  double ms = info[3].As<Napi::Number>().DoubleValue();
  struct timespec ts;
  struct timespec* tp = nullptr;
  if (ms >= 0) {
    ts.tv_sec = static_cast<time_t>(ms / 1000);
    ts.tv_nsec = static_cast<long>((ms - ts.tv_sec * 1000.0) * 1e6);
    tp = &ts;
  }
  long r = syscall(SYS_futex, word, FUTEX_WAIT, expected, tp, nullptr, 0);
  if (r == 0) return Napi::Number::New(env, 0);
  switch (errno) {
    case EAGAIN: return Napi::Number::New(env, 1);
    case ETIMEDOUT: return Napi::Number::New(env, 2);
    case EINTR: return Napi::Number::New(env, 0);
    default: return ThrowErrno(env, "ERR_MPRUN_SYSTEM", errno, "futex");
  }
}

Napi::Value Wake(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  int32_t* word = WordAt(env, info);
  if (word == nullptr) return env.Undefined();
  int count = info.Length() > 2 ? info[2].As<Napi::Number>().Int32Value() : INT_MAX;
  long r = syscall(SYS_futex, word, FUTEX_WAKE, count, nullptr, nullptr, 0);
  if (r < 0) return ThrowErrno(env, "ERR_MPRUN_SYSTEM", errno, "futex");
  return Napi::Number::New(env, static_cast<double>(r));
}

// A full fence: orders the non-temporal stores glibc's memcpy uses for large
// copies before the flag store that publishes them.
Napi::Value Fence(const Napi::CallbackInfo& info) {
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  return info.Env().Undefined();
}

// A monotonic clock in milliseconds, for the waits' deadlines: the runtime's polling loops
// read it every few turns, and node:perf_hooks (performance.now) costs a rank 2.3 ms of its
// start to load (cpu profile), loaded for nothing else.
Napi::Value NowMs(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(words::NowNs()) / 1e6);
}

Napi::Value Yield(const Napi::CallbackInfo& info) {
  sched_yield();
  return info.Env().Undefined();
}

}  // namespace

void InitFutex(Napi::Env env, Napi::Object exports) {
  exports.Set("futexWait", Napi::Function::New(env, Wait));
  exports.Set("futexWake", Napi::Function::New(env, Wake));
  exports.Set("yield", Napi::Function::New(env, Yield));
  exports.Set("nowMs", Napi::Function::New(env, NowMs));
  exports.Set("fence", Napi::Function::New(env, Fence));
}

}  // namespace mprun
