// The PMIx ABI as native/pmix.cc and native/pmix-lib.cc use it, and what they share:
// the library loaded at run time, its errors, and the conversion of values. See
// native/pmix.cc for why PMIx is native and how it is loaded.
#pragma once
#include "common.h"
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <sys/types.h>

#if __has_include(<pmix_common.h>)
#include <pmix_common.h>
#define MPRUN_HAVE_PMIX_COMMON_H 1
#endif

namespace mprun::pmix {

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
inline constexpr bool Same(const char* a, const char* b) { return std::string_view(a) == std::string_view(b); }
static_assert(Same(abi::kJobSize, PMIX_JOB_SIZE) && Same(abi::kLocalSize, PMIX_LOCAL_SIZE) && Same(abi::kUnivSize, PMIX_UNIV_SIZE) &&
                  Same(abi::kNumNodes, PMIX_NUM_NODES) && Same(abi::kLocalRank, PMIX_LOCAL_RANK) && Same(abi::kNodeRank, PMIX_NODE_RANK) &&
                  Same(abi::kLocalPeers, PMIX_LOCAL_PEERS) && Same(abi::kNodeId, PMIX_NODEID) && Same(abi::kHostname, PMIX_HOSTNAME) &&
                  Same(abi::kAppnum, PMIX_APPNUM) && Same(abi::kCollectData, PMIX_COLLECT_DATA) && Same(abi::kTimeout, PMIX_TIMEOUT) &&
                  Same(abi::kImmediate, PMIX_IMMEDIATE) && Same(abi::kOptional, PMIX_OPTIONAL),
              "PMIx keys");
#endif

// ---- The library, loaded once (pmix-lib.cc) ----

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

extern std::mutex gMutex;  // guards the load and the init/finalize state
extern bool gInitialized;
extern bool gFinalized;
extern abi::proc_t gSelf;

// The library, loaded at the first call; its `error` says why it is unusable (handle null).
Lib& Load();
// The library, loaded and initialized; else a pending exception and nullptr.
Lib* Ready(Napi::Env env);

// An MprunError carrying the PMIx status: `errno` its name, `pmixStatus` its number.
Napi::Error MakeError(Napi::Env env, const char* code, const std::string& message, abi::status_t st);
Napi::Value Throw(Napi::Env env, const char* code, const std::string& message, abi::status_t st = abi::kSuccess);
Napi::Value ThrowStatus(Napi::Env env, const std::string& what, abi::status_t st);
const char* StatusName(abi::status_t st);
const char* CodeOf(abi::status_t st);

void InfoBool(Lib& l, abi::info_t* info, const char* key, bool v);
void InfoInt(Lib& l, abi::info_t* info, const char* key, int v);
void ReleaseValue(Lib& l, abi::value_t* v);
const char* TypeName(abi::data_type_t t);
bool IntegerOf(const abi::value_t* v, int64_t* out);
Napi::Value ToJs(Napi::Env env, const char* key, const abi::value_t* v);
bool KeyOf(Napi::Env env, Napi::Value v, std::string* key);
bool RankOf(Napi::Env env, Napi::Value v, abi::rank_t* rank);

}  // namespace mprun::pmix
