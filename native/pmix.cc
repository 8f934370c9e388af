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
// ABI: the few structs used are declared here after the PMIx standard's ABI (one
// SONAME from v3 to v5). When pmix_common.h is found at build time (libpmix-dev),
// static asserts check these declarations against it.
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
#include "common.h"
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <mutex>
#include <string>
#include <string_view>

#if __has_include(<pmix_common.h>)
#include <pmix_common.h>
#define MPRUN_HAVE_PMIX_COMMON_H 1
#endif

namespace mprun {
namespace {

// ---- The PMIx ABI (pmix_common.h) ----
namespace abi {
using status_t = int;
using rank_t = uint32_t;
using data_type_t = uint16_t;
using scope_t = uint8_t;
constexpr size_t kMaxNsLen = 255;
constexpr size_t kMaxKeyLen = 511;

struct proc_t {
  char nspace[kMaxNsLen + 1];
  rank_t rank;
};
struct byte_object_t {
  char* bytes;
  size_t size;
};
// The union's widest member is pmix_envar_t {char*, char*, char}.
struct envar_t {
  char* envar;
  char* value;
  char separator;
};
struct value_t {
  data_type_t type;
  union {
    bool flag;
    uint8_t byte;
    char* string;
    size_t size;
    pid_t pid;
    int integer;
    int8_t int8;
    int16_t int16;
    int32_t int32;
    int64_t int64;
    unsigned int uint;
    uint8_t uint8;
    uint16_t uint16;
    uint32_t uint32;
    uint64_t uint64;
    status_t status;
    rank_t rank;
    byte_object_t bo;
    envar_t envar;
    void* ptr;
  } data;
};
struct info_t {
  char key[kMaxKeyLen + 1];
  uint32_t flags;
  value_t value;
};
static_assert(sizeof(proc_t) == 260, "pmix_proc_t ABI");
static_assert(sizeof(value_t) == 32, "pmix_value_t ABI");
static_assert(sizeof(info_t) == 552, "pmix_info_t ABI");

constexpr status_t kSuccess = 0;
constexpr status_t kErrProcEntryNotFound = -17;
constexpr status_t kErrTimeout = -24;
constexpr status_t kErrUnreach = -25;
constexpr status_t kErrNotFound = -46;
constexpr status_t kErrCommFailure = -49;
constexpr status_t kErrLostConnection = -61;
constexpr rank_t kRankWildcard = UINT32_MAX - 1;

constexpr data_type_t kBool = 1, kByte = 2, kString = 3, kSize = 4, kPid = 5, kInt = 6, kInt8 = 7, kInt16 = 8, kInt32 = 9, kInt64 = 10,
                      kUint = 11, kUint8 = 12, kUint16 = 13, kUint32 = 14, kUint64 = 15, kStatus = 20, kByteObject = 27, kProcRank = 40;
constexpr scope_t kLocal = 1, kRemote = 2, kGlobal = 3;

constexpr const char* kJobSize = "pmix.job.size";
constexpr const char* kLocalSize = "pmix.local.size";
constexpr const char* kUnivSize = "pmix.univ.size";
constexpr const char* kNumNodes = "pmix.num.nodes";
constexpr const char* kLocalRank = "pmix.lrank";
constexpr const char* kNodeRank = "pmix.nrank";
constexpr const char* kLocalPeers = "pmix.lpeers";
constexpr const char* kNodeId = "pmix.nodeid";
constexpr const char* kHostname = "pmix.hname";
constexpr const char* kAppnum = "pmix.appnum";
constexpr const char* kCollectData = "pmix.collect";
constexpr const char* kTimeout = "pmix.timeout";
constexpr const char* kImmediate = "pmix.immediate";
constexpr const char* kOptional = "pmix.optional";
}  // namespace abi

#ifdef MPRUN_HAVE_PMIX_COMMON_H
static_assert(sizeof(abi::proc_t) == sizeof(pmix_proc_t) && offsetof(abi::proc_t, rank) == offsetof(pmix_proc_t, rank), "pmix_proc_t");
static_assert(sizeof(abi::value_t) == sizeof(pmix_value_t) && offsetof(abi::value_t, data) == offsetof(pmix_value_t, data), "pmix_value_t");
static_assert(sizeof(abi::info_t) == sizeof(pmix_info_t) && offsetof(abi::info_t, flags) == offsetof(pmix_info_t, flags) &&
                  offsetof(abi::info_t, value) == offsetof(pmix_info_t, value),
              "pmix_info_t");
static_assert(abi::kMaxNsLen == PMIX_MAX_NSLEN && abi::kMaxKeyLen == PMIX_MAX_KEYLEN, "PMIx name lengths");
static_assert(abi::kErrTimeout == PMIX_ERR_TIMEOUT && abi::kErrUnreach == PMIX_ERR_UNREACH && abi::kErrNotFound == PMIX_ERR_NOT_FOUND &&
                  abi::kErrCommFailure == PMIX_ERR_COMM_FAILURE && abi::kErrLostConnection == PMIX_ERR_LOST_CONNECTION &&
                  abi::kErrProcEntryNotFound == PMIX_ERR_PROC_ENTRY_NOT_FOUND,
              "PMIx status codes");
static_assert(abi::kRankWildcard == PMIX_RANK_WILDCARD, "PMIX_RANK_WILDCARD");
static_assert(abi::kBool == PMIX_BOOL && abi::kByte == PMIX_BYTE && abi::kString == PMIX_STRING && abi::kSize == PMIX_SIZE && abi::kPid == PMIX_PID &&
                  abi::kInt == PMIX_INT && abi::kInt8 == PMIX_INT8 && abi::kInt16 == PMIX_INT16 && abi::kInt32 == PMIX_INT32 &&
                  abi::kInt64 == PMIX_INT64 && abi::kUint == PMIX_UINT && abi::kUint8 == PMIX_UINT8 && abi::kUint16 == PMIX_UINT16 &&
                  abi::kUint32 == PMIX_UINT32 && abi::kUint64 == PMIX_UINT64 && abi::kStatus == PMIX_STATUS && abi::kByteObject == PMIX_BYTE_OBJECT &&
                  abi::kProcRank == PMIX_PROC_RANK,
              "PMIx data types");
static_assert(abi::kLocal == PMIX_LOCAL && abi::kRemote == PMIX_REMOTE && abi::kGlobal == PMIX_GLOBAL, "PMIx scopes");
constexpr bool Same(const char* a, const char* b) { return std::string_view(a) == std::string_view(b); }
static_assert(Same(abi::kJobSize, PMIX_JOB_SIZE) && Same(abi::kLocalSize, PMIX_LOCAL_SIZE) && Same(abi::kUnivSize, PMIX_UNIV_SIZE) &&
                  Same(abi::kNumNodes, PMIX_NUM_NODES) && Same(abi::kLocalRank, PMIX_LOCAL_RANK) && Same(abi::kNodeRank, PMIX_NODE_RANK) &&
                  Same(abi::kLocalPeers, PMIX_LOCAL_PEERS) && Same(abi::kNodeId, PMIX_NODEID) && Same(abi::kHostname, PMIX_HOSTNAME) &&
                  Same(abi::kAppnum, PMIX_APPNUM) && Same(abi::kCollectData, PMIX_COLLECT_DATA) && Same(abi::kTimeout, PMIX_TIMEOUT) &&
                  Same(abi::kImmediate, PMIX_IMMEDIATE) && Same(abi::kOptional, PMIX_OPTIONAL),
              "PMIx keys");
#endif

// ---- The library, loaded once ----

struct Lib {
  void* handle = nullptr;
  std::string path;
  std::string version;  // PMIx_Get_version()
  std::string error;    // why it is not usable; empty when it is
  abi::status_t (*init)(abi::proc_t*, abi::info_t*, size_t) = nullptr;
  abi::status_t (*finalize)(const abi::info_t*, size_t) = nullptr;
  abi::status_t (*get)(const abi::proc_t*, const char*, const abi::info_t*, size_t, abi::value_t**) = nullptr;
  abi::status_t (*put)(abi::scope_t, const char*, abi::value_t*) = nullptr;
  abi::status_t (*commit)() = nullptr;
  abi::status_t (*fence)(const abi::proc_t*, size_t, const abi::info_t*, size_t) = nullptr;
  abi::status_t (*abort)(int, const char*, abi::proc_t*, size_t) = nullptr;
  const char* (*getVersion)() = nullptr;
  const char* (*errorString)(abi::status_t) = nullptr;
  // Present from v4 (v3.2 did PMIX_INFO_LOAD and PMIX_VALUE_RELEASE inline): used when present.
  abi::status_t (*infoLoad)(abi::info_t*, const char*, const void*, abi::data_type_t) = nullptr;
  void (*valueDestruct)(abi::value_t*) = nullptr;
};

std::mutex gMutex;  // guards the load and the init/finalize state
Lib* gLib = nullptr;
bool gInitialized = false;
bool gFinalized = false;
abi::proc_t gSelf{};

// Major and minor of the first "X.Y" in the version string ("OpenPMIx 4.2.2rc2 (PMIx Standard: 4.2, ...)").
bool ParseVersion(const std::string& s, int* major, int* minor) {
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] < '0' || s[i] > '9') continue;
    char* end = nullptr;
    long a = std::strtol(s.c_str() + i, &end, 10);
    if (*end != '.' || end[1] < '0' || end[1] > '9') return false;
    long b = std::strtol(end + 1, nullptr, 10);
    *major = static_cast<int>(a);
    *minor = static_cast<int>(b);
    return true;
  }
  return false;
}

// Loads the library on first use; the result (usable or the reason why not) is kept.
Lib& Load() {
  std::lock_guard<std::mutex> lock(gMutex);
  if (gLib != nullptr) return *gLib;
  auto* l = new Lib();
  gLib = l;
  const char* env = std::getenv("MPRUN_PMIX_LIB");
  l->path = env != nullptr && env[0] != '\0' ? env : "libpmix.so.2";
  const std::string from = env != nullptr && env[0] != '\0' ? " (from MPRUN_PMIX_LIB)" : "";
  // RTLD_GLOBAL: PMIx's plugins (pmix2/lib/pmix/mca_*.so) resolve libpmix's symbols through it, as under Slurm.
  l->handle = dlopen(l->path.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (l->handle == nullptr) {
    const char* why = dlerror();
    l->error = "cannot load the PMIx library " + l->path + from + ": " + (why != nullptr ? why : "unknown error") +
               (from.empty() ? "; install it (Debian: apt-get install libpmix2) or set MPRUN_PMIX_LIB to its path" : "");
    return *l;
  }
  auto fail = [&](const std::string& why) {
    l->error = why;
    dlclose(l->handle);
    l->handle = nullptr;
  };
  l->getVersion = reinterpret_cast<decltype(l->getVersion)>(dlsym(l->handle, "PMIx_Get_version"));
  if (l->getVersion == nullptr) {
    fail(l->path + from + " is not a PMIx library: it has no PMIx_Get_version");
    return *l;
  }
  const char* v = l->getVersion();
  l->version = v != nullptr ? v : "";
  int major = 0, minor = 0;
  if (!ParseVersion(l->version, &major, &minor)) {
    fail("the PMIx library " + l->path + from + " reports version \"" + l->version + "\", which has no major.minor; mprun needs PMIx 3.2 to 5.x");
    return *l;
  }
  if (major < 3 || (major == 3 && minor < 2) || major > 5) {
    fail("the PMIx library " + l->path + from + " is version " + std::to_string(major) + "." + std::to_string(minor) + " (\"" + l->version +
         "\"); mprun needs PMIx 3.2 to 5.x (libpmix.so.2, Debian's libpmix2)");
    return *l;
  }
  struct Sym {
    const char* name;
    void** slot;
  };
  const Sym required[] = {
      {"PMIx_Init", reinterpret_cast<void**>(&l->init)},         {"PMIx_Finalize", reinterpret_cast<void**>(&l->finalize)},
      {"PMIx_Get", reinterpret_cast<void**>(&l->get)},           {"PMIx_Put", reinterpret_cast<void**>(&l->put)},
      {"PMIx_Commit", reinterpret_cast<void**>(&l->commit)},     {"PMIx_Fence", reinterpret_cast<void**>(&l->fence)},
      {"PMIx_Abort", reinterpret_cast<void**>(&l->abort)},       {"PMIx_Error_string", reinterpret_cast<void**>(&l->errorString)},
  };
  for (const Sym& s : required) {
    *s.slot = dlsym(l->handle, s.name);
    if (*s.slot == nullptr) {
      fail("the PMIx library " + l->path + from + " (\"" + l->version + "\") lacks " + s.name);
      return *l;
    }
  }
  l->infoLoad = reinterpret_cast<decltype(l->infoLoad)>(dlsym(l->handle, "PMIx_Info_load"));
  l->valueDestruct = reinterpret_cast<decltype(l->valueDestruct)>(dlsym(l->handle, "PMIx_Value_destruct"));
  return *l;
}

// ---- Errors ----

const char* StatusName(abi::status_t st) {
  Lib* l = gLib;
  if (l != nullptr && l->errorString != nullptr) {
    const char* s = l->errorString(st);
    if (s != nullptr) return s;
  }
  return "PMIX_ERROR";
}

const char* CodeOf(abi::status_t st) {
  switch (st) {
    case abi::kErrTimeout:
      return "ERR_MPRUN_TIMEOUT";
    case abi::kErrUnreach:
    case abi::kErrCommFailure:
    case abi::kErrLostConnection:
      return "ERR_MPRUN_UNREACHABLE";
    default:
      return "ERR_MPRUN_SYSTEM";
  }
}

// An MprunError carrying the PMIx status: `errno` its name, `pmixStatus` its number.
Napi::Error MakeError(Napi::Env env, const char* code, const std::string& message, abi::status_t st) {
  ThrowCode(env, code, message);
  Napi::Error e = env.GetAndClearPendingException();
  if (st != abi::kSuccess) {
    e.Value().Set("errno", StatusName(st));
    e.Value().Set("pmixStatus", st);
  }
  return e;
}

Napi::Value Throw(Napi::Env env, const char* code, const std::string& message, abi::status_t st = abi::kSuccess) {
  MakeError(env, code, message, st).ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value ThrowStatus(Napi::Env env, const std::string& what, abi::status_t st) {
  return Throw(env, CodeOf(st), what + " failed: " + StatusName(st) + " (" + std::to_string(st) + ")", st);
}

// The library, loaded and initialized; else a pending exception and nullptr.
Lib* Ready(Napi::Env env) {
  Lib& l = Load();
  if (l.handle == nullptr) {
    Throw(env, "ERR_MPRUN_UNSUPPORTED", l.error);
    return nullptr;
  }
  std::lock_guard<std::mutex> lock(gMutex);
  if (gFinalized) {
    Throw(env, "ERR_MPRUN_FINALIZED", "PMIx was finalized in this process");
    return nullptr;
  }
  if (!gInitialized) {
    Throw(env, "ERR_MPRUN_NOT_INITIALIZED", "PMIx is not initialized: call init() first");
    return nullptr;
  }
  return &l;
}

// ---- Values ----

void InfoBool(Lib& l, abi::info_t* info, const char* key, bool v) {
  if (l.infoLoad != nullptr) {
    l.infoLoad(info, key, &v, abi::kBool);
    return;
  }
  std::memset(info, 0, sizeof *info);
  std::strncpy(info->key, key, abi::kMaxKeyLen);
  info->value.type = abi::kBool;
  info->value.data.flag = v;
}

void InfoInt(Lib& l, abi::info_t* info, const char* key, int v) {
  if (l.infoLoad != nullptr) {
    l.infoLoad(info, key, &v, abi::kInt);
    return;
  }
  std::memset(info, 0, sizeof *info);
  std::strncpy(info->key, key, abi::kMaxKeyLen);
  info->value.type = abi::kInt;
  info->value.data.integer = v;
}

// PMIX_VALUE_RELEASE: the library's destructor when it has one, else what v3.2's macro did for the types read here.
void ReleaseValue(Lib& l, abi::value_t* v) {
  if (v == nullptr) return;
  if (l.valueDestruct != nullptr) {
    l.valueDestruct(v);
  } else if (v->type == abi::kString) {
    std::free(v->data.string);
  } else if (v->type == abi::kByteObject) {
    std::free(v->data.bo.bytes);
  }
  std::free(v);
}

const char* TypeName(abi::data_type_t t) {
  switch (t) {
    case abi::kBool: return "PMIX_BOOL";
    case abi::kByte: return "PMIX_BYTE";
    case abi::kString: return "PMIX_STRING";
    case abi::kSize: return "PMIX_SIZE";
    case abi::kPid: return "PMIX_PID";
    case abi::kInt: return "PMIX_INT";
    case abi::kInt8: return "PMIX_INT8";
    case abi::kInt16: return "PMIX_INT16";
    case abi::kInt32: return "PMIX_INT32";
    case abi::kInt64: return "PMIX_INT64";
    case abi::kUint: return "PMIX_UINT";
    case abi::kUint8: return "PMIX_UINT8";
    case abi::kUint16: return "PMIX_UINT16";
    case abi::kUint32: return "PMIX_UINT32";
    case abi::kUint64: return "PMIX_UINT64";
    case abi::kStatus: return "PMIX_STATUS";
    case abi::kByteObject: return "PMIX_BYTE_OBJECT";
    case abi::kProcRank: return "PMIX_PROC_RANK";
    default: return "another PMIx type";
  }
}

// Any integer type as a signed 64-bit value (servers differ: Slurm stores
// PMIX_APPNUM as PMIX_INT, mpirun as PMIX_UINT32). False for other types.
bool IntegerOf(const abi::value_t* v, int64_t* out) {
  switch (v->type) {
    case abi::kByte: *out = v->data.byte; return true;
    case abi::kUint8: *out = v->data.uint8; return true;
    case abi::kSize: if (v->data.size > static_cast<size_t>(INT64_MAX)) return false; *out = static_cast<int64_t>(v->data.size); return true;
    case abi::kPid: *out = v->data.pid; return true;
    case abi::kInt: *out = v->data.integer; return true;
    case abi::kInt8: *out = v->data.int8; return true;
    case abi::kInt16: *out = v->data.int16; return true;
    case abi::kInt32: *out = v->data.int32; return true;
    case abi::kInt64: *out = v->data.int64; return true;
    case abi::kUint: *out = v->data.uint; return true;
    case abi::kUint16: *out = v->data.uint16; return true;
    case abi::kUint32: *out = v->data.uint32; return true;
    case abi::kUint64: if (v->data.uint64 > static_cast<uint64_t>(INT64_MAX)) return false; *out = static_cast<int64_t>(v->data.uint64); return true;
    case abi::kStatus: *out = v->data.status; return true;
    case abi::kProcRank: *out = v->data.rank; return true;
    default: return false;
  }
}

// A value as JS: byte objects as a Buffer (a copy), strings, booleans, integers as numbers (bigint past 2^53).
Napi::Value ToJs(Napi::Env env, const char* key, const abi::value_t* v) {
  switch (v->type) {
    case abi::kByteObject:
      return Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(v->data.bo.bytes), v->data.bo.bytes != nullptr ? v->data.bo.size : 0);
    case abi::kString:
      return Napi::String::New(env, v->data.string != nullptr ? v->data.string : "");
    case abi::kBool:
      return Napi::Boolean::New(env, v->data.flag);
    case abi::kUint64:
      if (v->data.uint64 > (1ull << 53)) return Napi::BigInt::New(env, static_cast<uint64_t>(v->data.uint64));
      return Napi::Number::New(env, static_cast<double>(v->data.uint64));
    case abi::kSize:
      if (v->data.size > (1ull << 53)) return Napi::BigInt::New(env, static_cast<uint64_t>(v->data.size));
      return Napi::Number::New(env, static_cast<double>(v->data.size));
    default: {
      int64_t i = 0;
      if (IntegerOf(v, &i)) {
        if (i > (1ll << 53) || i < -(1ll << 53)) return Napi::BigInt::New(env, i);
        return Napi::Number::New(env, static_cast<double>(i));
      }
      return Throw(env, "ERR_MPRUN_UNSUPPORTED", std::string("the PMIx value of ") + key + " has type " + TypeName(v->type) + " (" +
                                                     std::to_string(v->type) + "), which mprun does not read");
    }
  }
}

bool KeyOf(Napi::Env env, Napi::Value v, std::string* key) {
  if (!v.IsString()) {
    Napi::TypeError::New(env, "a PMIx key must be a string").ThrowAsJavaScriptException();
    return false;
  }
  *key = v.As<Napi::String>().Utf8Value();
  if (key->empty() || key->size() > abi::kMaxKeyLen) {
    Napi::RangeError::New(env, "a PMIx key has 1 to 511 bytes").ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

bool RankOf(Napi::Env env, Napi::Value v, abi::rank_t* rank) {
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0 && d <= abi::kRankWildcard && d == static_cast<double>(static_cast<abi::rank_t>(d)))) {
    Napi::RangeError::New(env, "a PMIx rank is an integer from 0 to 2^32 - 2 (the last: PMIX_RANK_WILDCARD)").ThrowAsJavaScriptException();
    return false;
  }
  *rank = static_cast<abi::rank_t>(d);
  return true;
}

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
