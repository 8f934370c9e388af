// PMIx client: how a rank started by a PMIx server (Slurm's `srun --mpi=pmix`,
// Open MPI's `mpirun`) learns its rank, the job's size, its node and local
// peers, and exchanges business cards (PMIx_Put/Commit/Fence/Get).
//
// Why native: PMIx is reachable only through its C library. The client-server
// protocol (socket, security handshake, buffer formats, the node's shared-memory
// data store) is private to libpmix and changes between releases, so there is no
// wire protocol that TypeScript could speak instead. This file holds only the calls;
// what to require, what to retry and what to tell the user live in runtime/pmix.ts.
//
// Loading: libpmix.so.2 (the SONAME of PMIx v3.2, v4 and v5; Debian's libpmix2),
// or the file named by $MPRUN_PMIX_LIB, is dlopened at the first call that needs
// it, never when the addon loads, so the addon builds and runs without PMIx. Its
// version (PMIx_Get_version) is checked before anything else is called: v3.2 to
// v5 are accepted, anything else is refused naming the version found and the path.
//
// ABI: the few structs used are declared in pmix.h after the PMIx standard's ABI
// (one SONAME from v3 to v5). When pmix_common.h is found at build time
// (libpmix-dev), static asserts check them against it. pmix-lib.cc loads the
// library and converts values; this file holds the calls.
//
// Singletons: PMIx_Init without PMIX_NAMESPACE in the environment makes a
// singleton that looks like success; init() refuses first ("not started by a
// PMIx server").
//
// Threads: the synchronous calls (init, jobInfo, put, commit, fence, get, abort,
// finalize) block the calling thread until the server answers: fine while a rank
// bootstraps, not on a hot path. fenceAsync/getAsync block a libuv pool thread
// instead and settle a promise. No PMIx callback is registered: PMIx runs its
// callbacks on its own progress thread, where no JavaScript may run; the blocking
// API waits for them inside the library.
#include "pmix.h"
#include <cstdlib>
#include <cstring>

namespace mprun {
namespace {

using namespace pmix;

// ---- The calls ----

// probe() -> { loaded, path, version, reason }: loads the library (never PMIx_Init); never throws.
Napi::Value Probe(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  Lib& l = Load();
  auto o = Napi::Object::New(env);
  o.Set("loaded", l.handle != nullptr);
  o.Set("path", l.path);
  o.Set("version", l.version.empty() ? env.Null() : Napi::String::New(env, l.version));
  o.Set("reason", l.handle != nullptr ? env.Null() : Napi::String::New(env, l.error));
  return o;
}

// init() -> { nspace, rank }. Refuses a singleton; a second call returns the same.
Napi::Value Init(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  const char* ns = std::getenv("PMIX_NAMESPACE");
  if (ns == nullptr || ns[0] == '\0') {
    return Throw(env, "ERR_MPRUN_UNSUPPORTED",
                 "not started by a PMIx server (PMIX_NAMESPACE is not set): launch with `srun --mpi=pmix` or Open MPI's `mpirun`");
  }
  Lib& l = Load();
  if (l.handle == nullptr) return Throw(env, "ERR_MPRUN_UNSUPPORTED", l.error);
  std::lock_guard<std::mutex> lock(gMutex);
  if (gFinalized) return Throw(env, "ERR_MPRUN_FINALIZED", "PMIx was finalized in this process; it cannot be initialized again");
  if (!gInitialized) {
    abi::proc_t self{};
    abi::status_t st = l.init(&self, nullptr, 0);
    if (st != abi::kSuccess) {
      return Throw(env, CodeOf(st),
                   std::string("PMIx_Init failed: ") + StatusName(st) + " (" + std::to_string(st) + "); the PMIx server of namespace " + ns +
                       " did not accept this process (library " + l.path + ", \"" + l.version + "\")",
                   st);
    }
    gSelf = self;
    gInitialized = true;
  }
  auto o = Napi::Object::New(env);
  o.Set("nspace", std::string(gSelf.nspace, strnlen(gSelf.nspace, sizeof gSelf.nspace)));
  o.Set("rank", gSelf.rank);
  return o;
}

// One PMIx_Get on this process's namespace; *out null when not found.
abi::status_t GetRaw(Lib& l, abi::rank_t rank, const char* key, const abi::info_t* infos, size_t ninfo, abi::value_t** out) {
  abi::proc_t p{};
  std::memcpy(p.nspace, gSelf.nspace, sizeof p.nspace);
  p.rank = rank;
  *out = nullptr;
  abi::status_t st = l.get(&p, key, infos, ninfo, out);
  if (st == abi::kErrNotFound || st == abi::kErrProcEntryNotFound) {
    ReleaseValue(l, *out);
    *out = nullptr;
    return abi::kSuccess;
  }
  return st;
}

// A job-level field for jobInfo(): an integer (any integer type), a string, or null when the server has none.
bool Field(Napi::Env env, Lib& l, Napi::Object o, const char* name, abi::rank_t rank, const char* key, bool isString) {
  abi::info_t immediate;
  InfoBool(l, &immediate, abi::kImmediate, true);
  abi::value_t* v = nullptr;
  abi::status_t st = GetRaw(l, rank, key, &immediate, 1, &v);
  if (st != abi::kSuccess) {
    ThrowStatus(env, std::string("PMIx_Get(") + key + ")", st);
    return false;
  }
  if (v == nullptr) {
    o.Set(name, env.Null());
    return true;
  }
  bool ok = true;
  int64_t i = 0;
  if (isString && v->type == abi::kString) {
    o.Set(name, v->data.string != nullptr ? v->data.string : "");
  } else if (!isString && IntegerOf(v, &i) && i >= 0 && i <= UINT32_MAX) {
    o.Set(name, static_cast<double>(i));
  } else {
    Throw(env, "ERR_MPRUN_PROTOCOL",
          std::string("the PMIx server gave ") + key + " as " + TypeName(v->type) + " (" + std::to_string(v->type) + ")" +
              (isString ? "; expected PMIX_STRING" : "; expected an integer from 0 to 2^32 - 1"));
    ok = false;
  }
  ReleaseValue(l, v);
  return ok;
}

// jobInfo() -> { size, localSize, universeSize, numNodes, localPeers, localRank, nodeRank, nodeId, hostname, appnum }:
// job-level keys (wildcard rank) and this process's own; each null when the server does not provide it.
Napi::Value JobInfo(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  Lib* l = Ready(env);
  if (l == nullptr) return env.Undefined();
  auto o = Napi::Object::New(env);
  const abi::rank_t self = gSelf.rank, job = abi::kRankWildcard;
  if (!Field(env, *l, o, "size", job, abi::kJobSize, false) || !Field(env, *l, o, "localSize", job, abi::kLocalSize, false) ||
      !Field(env, *l, o, "universeSize", job, abi::kUnivSize, false) || !Field(env, *l, o, "numNodes", job, abi::kNumNodes, false) ||
      !Field(env, *l, o, "localPeers", job, abi::kLocalPeers, true) || !Field(env, *l, o, "localRank", self, abi::kLocalRank, false) ||
      !Field(env, *l, o, "nodeRank", self, abi::kNodeRank, false) || !Field(env, *l, o, "nodeId", self, abi::kNodeId, false) ||
      !Field(env, *l, o, "hostname", self, abi::kHostname, true) || !Field(env, *l, o, "appnum", self, abi::kAppnum, false)) {
    return env.Undefined();
  }
  return o;
}

// put(scope: 1 local | 2 remote | 3 global, key, value: bytes | string): PMIx_Put copies the value.
Napi::Value Put(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  Lib* l = Ready(env);
  if (l == nullptr) return env.Undefined();
  const int scope = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
  if (scope != abi::kLocal && scope != abi::kRemote && scope != abi::kGlobal) {
    Napi::RangeError::New(env, "PMIx scope is 1 (local), 2 (remote) or 3 (global)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string key;
  if (!KeyOf(env, info[1], &key)) return env.Undefined();
  abi::value_t v{};
  std::string s;
  if (info[2].IsString()) {
    s = info[2].As<Napi::String>().Utf8Value();
    v.type = abi::kString;
    v.data.string = s.data();
  } else {
    uint8_t* data = nullptr;
    size_t length = 0;
    if (!BytesOf(env, info[2], &data, &length)) return env.Undefined();
    v.type = abi::kByteObject;
    v.data.bo.bytes = reinterpret_cast<char*>(data);
    v.data.bo.size = length;
  }
  abi::status_t st = l->put(static_cast<abi::scope_t>(scope), key.c_str(), &v);
  if (st != abi::kSuccess) return ThrowStatus(env, "PMIx_Put(" + key + ")", st);
  return env.Undefined();
}

// commit(): makes the values put so far visible (asynchronous in the library: a fence or a peer's get follows).
Napi::Value Commit(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  Lib* l = Ready(env);
  if (l == nullptr) return env.Undefined();
  abi::status_t st = l->commit();
  if (st != abi::kSuccess) return ThrowStatus(env, "PMIx_Commit", st);
  return env.Undefined();
}

struct FenceArgs {
  bool collect = false;
  int timeout = 0;
};

bool FenceArgsOf(Napi::Env env, const Napi::CallbackInfo& info, FenceArgs* a) {
  a->collect = info[0].ToBoolean().Value();
  double t = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 0;
  if (!(t >= 0 && t <= INT32_MAX)) {
    Napi::RangeError::New(env, "a PMIx timeout is a number of seconds, 0 for none").ThrowAsJavaScriptException();
    return false;
  }
  a->timeout = static_cast<int>(t);
  return true;
}

abi::status_t DoFence(Lib& l, const FenceArgs& a) {
  abi::info_t infos[2];
  size_t n = 0;
  if (a.collect) InfoBool(l, &infos[n++], abi::kCollectData, true);
  if (a.timeout > 0) InfoInt(l, &infos[n++], abi::kTimeout, a.timeout);
  return l.fence(nullptr, 0, n > 0 ? infos : nullptr, n);
}

std::string FenceWhat(const FenceArgs& a) {
  return std::string("PMIx_Fence(") + (a.collect ? "collect" : "no data") + (a.timeout > 0 ? ", timeout " + std::to_string(a.timeout) + " s" : "") + ")";
}

// fence(collect, timeoutSeconds): every process of the namespace; blocks this thread.
Napi::Value Fence(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  FenceArgs a;
  if (!FenceArgsOf(env, info, &a)) return env.Undefined();
  Lib* l = Ready(env);
  if (l == nullptr) return env.Undefined();
  abi::status_t st = DoFence(*l, a);
  if (st != abi::kSuccess) return ThrowStatus(env, FenceWhat(a), st);
  return env.Undefined();
}

struct GetArgs {
  abi::rank_t rank = 0;
  std::string key;
  bool optional = false;
  bool immediate = false;
  int timeout = 0;
};

bool GetArgsOf(Napi::Env env, const Napi::CallbackInfo& info, GetArgs* a) {
  if (!RankOf(env, info[0], &a->rank) || !KeyOf(env, info[1], &a->key)) return false;
  if (info[2].IsObject()) {
    auto o = info[2].As<Napi::Object>();
    a->optional = o.Get("optional").ToBoolean().Value();
    a->immediate = o.Get("immediate").ToBoolean().Value();
    Napi::Value t = o.Get("timeout");
    double d = t.IsNumber() ? t.As<Napi::Number>().DoubleValue() : 0;
    if (!(d >= 0 && d <= INT32_MAX)) {
      Napi::RangeError::New(env, "a PMIx timeout is a number of seconds, 0 for none").ThrowAsJavaScriptException();
      return false;
    }
    a->timeout = static_cast<int>(d);
  }
  return true;
}

abi::status_t DoGet(Lib& l, const GetArgs& a, abi::value_t** out) {
  abi::info_t infos[3];
  size_t n = 0;
  if (a.optional) InfoBool(l, &infos[n++], abi::kOptional, true);
  if (a.immediate) InfoBool(l, &infos[n++], abi::kImmediate, true);
  if (a.timeout > 0) InfoInt(l, &infos[n++], abi::kTimeout, a.timeout);
  return GetRaw(l, a.rank, a.key.c_str(), n > 0 ? infos : nullptr, n, out);
}

std::string GetWhat(const GetArgs& a) {
  return "PMIx_Get(rank " + (a.rank == abi::kRankWildcard ? std::string("wildcard") : std::to_string(a.rank)) + ", " + a.key + ")";
}

// get(rank, key, { optional, immediate, timeout }) -> Buffer | string | number | bigint | boolean | null (not found).
// Without optional/immediate, a peer's key not yet known here is fetched from its server (direct modex): this thread blocks until then.
Napi::Value Get(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  GetArgs a;
  if (!GetArgsOf(env, info, &a)) return env.Undefined();
  Lib* l = Ready(env);
  if (l == nullptr) return env.Undefined();
  abi::value_t* v = nullptr;
  abi::status_t st = DoGet(*l, a, &v);
  if (st != abi::kSuccess) return ThrowStatus(env, GetWhat(a), st);
  if (v == nullptr) return env.Null();
  Napi::Value r = ToJs(env, a.key.c_str(), v);
  ReleaseValue(*l, v);
  return r;
}

// The asynchronous forms: the blocking call runs on a libuv pool thread; the promise settles on the JS thread.
class PmixWorker : public Napi::AsyncWorker {
 public:
  PmixWorker(Napi::Env env, Lib& l) : Napi::AsyncWorker(env), lib_(l), deferred_(Napi::Promise::Deferred::New(env)) {}
  ~PmixWorker() override { ReleaseValue(lib_, value_); }
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void OnOK() override {
    auto env = Env();
    Napi::HandleScope scope(env);
    if (status_ != abi::kSuccess) {
      deferred_.Reject(MakeError(env, CodeOf(status_), what_ + " failed: " + StatusName(status_) + " (" + std::to_string(status_) + ")", status_).Value());
      return;
    }
    if (value_ == nullptr) {
      deferred_.Resolve(env.Null());
      return;
    }
    Napi::Value r = ToJs(env, what_.c_str(), value_);
    if (env.IsExceptionPending()) {
      deferred_.Reject(env.GetAndClearPendingException().Value());
      return;
    }
    deferred_.Resolve(r);
  }

  Lib& lib_;
  Napi::Promise::Deferred deferred_;
  abi::status_t status_ = abi::kSuccess;
  abi::value_t* value_ = nullptr;
  std::string what_;
};

class FenceWorker : public PmixWorker {
 public:
  FenceWorker(Napi::Env env, Lib& l, FenceArgs a) : PmixWorker(env, l), args_(a) { what_ = FenceWhat(a); }
  void Execute() override { status_ = DoFence(lib_, args_); }

 private:
  FenceArgs args_;
};

class GetWorker : public PmixWorker {
 public:
  GetWorker(Napi::Env env, Lib& l, GetArgs a) : PmixWorker(env, l), args_(std::move(a)) { what_ = GetWhat(args_); }
  void Execute() override { status_ = DoGet(lib_, args_, &value_); }

 private:
  GetArgs args_;
};

// fenceAsync(collect, timeoutSeconds) -> Promise<void> (resolves with null).
Napi::Value FenceAsync(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  FenceArgs a;
  if (!FenceArgsOf(env, info, &a)) return env.Undefined();
  Lib* l = Ready(env);
  if (l == nullptr) return env.Undefined();
  auto* w = new FenceWorker(env, *l, a);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// getAsync(rank, key, options) -> Promise of what get() returns.
Napi::Value GetAsync(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  GetArgs a;
  if (!GetArgsOf(env, info, &a)) return env.Undefined();
  Lib* l = Ready(env);
  if (l == nullptr) return env.Undefined();
  auto* w = new GetWorker(env, *l, std::move(a));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// abort(status, message): asks the server to end every process of the namespace (this one too).
Napi::Value Abort(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  Lib* l = Ready(env);
  if (l == nullptr) return env.Undefined();
  const int status = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1;
  const std::string msg = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : std::string();
  abi::status_t st = l->abort(status, msg.c_str(), nullptr, 0);
  if (st != abi::kSuccess) return ThrowStatus(env, "PMIx_Abort", st);
  return env.Undefined();
}

// finalize(): disconnects from the server (no barrier). A second call does nothing.
Napi::Value Finalize(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  Lib& l = Load();
  std::lock_guard<std::mutex> lock(gMutex);
  if (!gInitialized || gFinalized) return env.Undefined();
  gFinalized = true;
  abi::status_t st = l.finalize(nullptr, 0);
  if (st != abi::kSuccess) return ThrowStatus(env, "PMIx_Finalize", st);
  return env.Undefined();
}

// state() -> 'idle' | 'initialized' | 'finalized'
Napi::Value State(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(gMutex);
  return Napi::String::New(info.Env(), gFinalized ? "finalized" : gInitialized ? "initialized" : "idle");
}

}  // namespace

void InitPmix(Napi::Env env, Napi::Object exports) {
  auto x = Napi::Object::New(env);
  x.Set("probe", Napi::Function::New(env, Probe));
  x.Set("init", Napi::Function::New(env, Init));
  x.Set("jobInfo", Napi::Function::New(env, JobInfo));
  x.Set("put", Napi::Function::New(env, Put));
  x.Set("commit", Napi::Function::New(env, Commit));
  x.Set("fence", Napi::Function::New(env, Fence));
  x.Set("fenceAsync", Napi::Function::New(env, FenceAsync));
  x.Set("get", Napi::Function::New(env, Get));
  x.Set("getAsync", Napi::Function::New(env, GetAsync));
  x.Set("abort", Napi::Function::New(env, Abort));
  x.Set("finalize", Napi::Function::New(env, Finalize));
  x.Set("state", Napi::Function::New(env, State));
  x.Set("rankWildcard", Napi::Number::New(env, abi::kRankWildcard));
  exports.Set("pmix", x);
}

}  // namespace mprun
