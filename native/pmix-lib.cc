// PMIx's library, loaded at run time, and what the calls of native/pmix.cc share:
// errors carrying PMIx statuses, info arrays, and values converted to JS with a
// check of every pmix_value_t's type. Native for the reason native/pmix.cc gives:
// PMIx is reachable only through its C library.
#include "pmix.h"
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>

namespace mprun::pmix {

std::mutex gMutex;
bool gInitialized = false;
bool gFinalized = false;
abi::proc_t gSelf{};

namespace {

Lib* gLib = nullptr;

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

}  // namespace

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

Napi::Value Throw(Napi::Env env, const char* code, const std::string& message, abi::status_t st) {
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

}  // namespace mprun::pmix
