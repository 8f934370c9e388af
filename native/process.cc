// Process-level controls a rank needs: dying with mprun, letting peers use
// CMA on it, and binding to cores.
#include "common.h"
#include <cerrno>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

namespace mprun {
namespace {

// Ties this process's life to its parent's: a rank must never outlive the
// launcher that started it (no orphans, even when mprun is SIGKILLed).
Napi::Value DieWithParent(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  int expectedParent = info[0].As<Napi::Number>().Int32Value();
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return ThrowErrno(env, "ERR_MPRUN_SYSTEM", errno, "prctl");
  // The parent may have died before prctl took effect.
  if (getppid() != expectedParent) kill(getpid(), SIGKILL);
  return env.Undefined();
}

// Yama's ptrace_scope=1 allows CMA only from a declared tracer; declaring any
// is what Open MPI and UCX do. Harmless where Yama is absent.
Napi::Value AllowPtraceAny(const Napi::CallbackInfo& info) {
#ifdef PR_SET_PTRACER
  prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
#endif
  return info.Env().Undefined();
}

// setAffinity([cpu, ...]): binds the calling process (all its threads
// created later) to these CPUs.
Napi::Value SetAffinity(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (!info[0].IsArray()) return ThrowCode(env, "ERR_MPRUN_ARG", "setAffinity expects an array of CPU numbers");
  auto list = info[0].As<Napi::Array>();
  cpu_set_t set;
  CPU_ZERO(&set);
  for (uint32_t i = 0; i < list.Length(); i++) {
    int cpu = list.Get(i).As<Napi::Number>().Int32Value();
    if (cpu < 0 || cpu >= CPU_SETSIZE) return ThrowCode(env, "ERR_MPRUN_ARG", "CPU number out of range");
    CPU_SET(cpu, &set);
  }
  if (sched_setaffinity(0, sizeof(set), &set) != 0) return ThrowErrno(env, "ERR_MPRUN_SYSTEM", errno, "sched_setaffinity");
  return env.Undefined();
}

// getAffinity() -> the CPUs this process may run on.
Napi::Value GetAffinity(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return ThrowErrno(env, "ERR_MPRUN_SYSTEM", errno, "sched_getaffinity");
  auto out = Napi::Array::New(env);
  uint32_t n = 0;
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &set)) out.Set(n++, Napi::Number::New(env, c));
  return out;
}

}  // namespace

void InitProcess(Napi::Env env, Napi::Object exports) {
  exports.Set("dieWithParent", Napi::Function::New(env, DieWithParent));
  exports.Set("allowPtraceAny", Napi::Function::New(env, AllowPtraceAny));
  exports.Set("setAffinity", Napi::Function::New(env, SetAffinity));
  exports.Set("getAffinity", Napi::Function::New(env, GetAffinity));
}

}  // namespace mprun
