// The UCX data path (issue 12): libucp's one-sided operations, active
// messages and worker progress, for transports/ucx.
//
// Why native: UCP is a C library with callbacks that run inside
// ucp_worker_progress (and, with the progress thread, on another thread), and
// its requests are C pointers that must be freed exactly once. A JS binding per
// call (ffi) would allocate a closure or a handle per operation; here requests
// never reach JavaScript: an operation takes a slot number chosen by the caller
// and its callback writes the status (and an atomic's old value) into a shared
// Int32Array/BigInt64Array and appends the slot to a completion ring, which
// JavaScript reads with plain loads. Arriving messages are appended to a batch
// that JavaScript takes in one call. And only native code can progress the
// worker while the JavaScript thread computes (below), which over UCX's TCP
// transport is what makes gets and atomics on a busy rank complete at all.
//
// libucp.so.0 is opened with dlopen at first use, never at addon load: the
// addon loads (and the build succeeds, __has_include below) without UCX. The
// version is checked ourselves (ucp_init_version only logs a mismatch); the
// nbx API needs >= 1.9. MPRUN_UCX_LIB names another library file.
//
// Environment set before dlopen unless the user set it (research/ucx_pmix.md,
// pitfalls): UCX_ERROR_SIGNALS empty (UCX would trap SIGSEGV/SIGBUS/SIGILL/
// SIGFPE, and Node's wasm bounds checks need its own SIGSEGV handler);
// UCX_MEM_EVENTS=n (UCX's memory hooks hot-patch mmap/munmap, which races with
// Node's threads calling mmap; they feed only the registration cache, which
// TCP does not use: registration costs nothing there, and the symmetric heap
// is registered once at wire-up, not per operation).
//
// Progress thread (optional, open({ progressThread })): waits on the worker's
// event fd and progresses the worker (MULTI thread mode: UCP's own lock) while
// the JavaScript thread has not progressed it for kIdleNs. While JavaScript is
// itself polling, the thread naps instead of contending for the worker lock,
// so a rank that waits costs the same latency as without the thread.
#include "common.h"

#if __has_include(<ucp/api/ucp.h>)
#define MPRUN_HAVE_UCX_HEADERS 1
#include <ucp/api/ucp.h>
#else
#define MPRUN_HAVE_UCX_HEADERS 0
#endif

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <memory>
#include <mutex>
#include <string>
#include <sys/epoll.h>
#include <thread>
#include <time.h>
#include <unistd.h>
#include <unordered_map>
#include <vector>

namespace mprun {

#if MPRUN_HAVE_UCX_HEADERS

namespace {

constexpr const char* kCode = "ERR_MPRUN_UCX";
// Operation slots JavaScript may have in flight at once (transports/ucx/slots.ts mirrors it).
constexpr uint32_t kSlots = 4096;
// Shared control area: status[kSlots] int32 | result[kSlots] int64 | ring[kSlots] int32 | ctl[16] int32.
constexpr uint32_t kCtlRingTail = 0;   // completions appended so far (the ring index is this mod kSlots)
constexpr uint32_t kCtlInbox = 1;      // message records waiting for takeMessages()
constexpr uint32_t kCtlFailedEps = 2;  // endpoints that saw an error (bumped on each)
constexpr uint32_t kCtlWords = 16;
constexpr unsigned kAmId = 0;
constexpr int64_t kIdleNs = 50'000;          // the JS thread counts as polling this long after a progress()
constexpr long kNapNs = 200'000;             // how long the thread naps while it does

#define UCP_FN(name) decltype(&::name) name = nullptr

struct Api {
  void* lib = nullptr;
  std::string path;
  std::string error;  // why it could not be loaded
  unsigned major = 0, minor = 0, release = 0;
  UCP_FN(ucp_get_version);
  UCP_FN(ucp_init_version);
  UCP_FN(ucp_config_read);
  UCP_FN(ucp_config_release);
  UCP_FN(ucp_cleanup);
  UCP_FN(ucp_context_print_info);
  UCP_FN(ucp_worker_create);
  UCP_FN(ucp_worker_destroy);
  UCP_FN(ucp_worker_query);
  UCP_FN(ucp_worker_get_address);
  UCP_FN(ucp_worker_release_address);
  UCP_FN(ucp_worker_progress);
  UCP_FN(ucp_worker_get_efd);
  UCP_FN(ucp_worker_arm);
  UCP_FN(ucp_worker_signal);
  UCP_FN(ucp_worker_set_am_recv_handler);
  UCP_FN(ucp_worker_flush_nbx);
  UCP_FN(ucp_ep_create);
  UCP_FN(ucp_ep_close_nbx);
  UCP_FN(ucp_ep_flush_nbx);
  UCP_FN(ucp_ep_print_info);
  UCP_FN(ucp_mem_map);
  UCP_FN(ucp_mem_unmap);
  UCP_FN(ucp_rkey_pack);
  UCP_FN(ucp_rkey_buffer_release);
  UCP_FN(ucp_ep_rkey_unpack);
  UCP_FN(ucp_rkey_destroy);
  UCP_FN(ucp_put_nbx);
  UCP_FN(ucp_get_nbx);
  UCP_FN(ucp_atomic_op_nbx);
  UCP_FN(ucp_am_send_nbx);
  UCP_FN(ucp_am_recv_data_nbx);
  UCP_FN(ucp_request_check_status);
  UCP_FN(ucp_request_free);
  UCP_FN(ucs_status_string);
};

Api api;
bool loadTried = false;

template <typename F>
bool Sym(F& fn, const char* name, std::string& missing) {
  fn = reinterpret_cast<F>(dlsym(api.lib, name));
  if (fn == nullptr) {
    if (!missing.empty()) missing += ", ";
    missing += name;
  }
  return fn != nullptr;
}

// Opens libucp and resolves every function once; afterwards api.error says why not.
bool Load() {
  if (loadTried) return api.error.empty();
  loadTried = true;
  setenv("UCX_ERROR_SIGNALS", "", 0);
  setenv("UCX_MEM_EVENTS", "n", 0);
  const char* override = getenv("MPRUN_UCX_LIB");
  api.path = override != nullptr && override[0] != '\0' ? override : "libucp.so.0";
  api.lib = dlopen(api.path.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (api.lib == nullptr) {
    const char* e = dlerror();
    api.error = std::string("cannot load ") + api.path + ": " + (e != nullptr ? e : "dlopen failed") +
                " (Debian: apt-get install libucx0)";
    return false;
  }
  std::string missing;
#define S(name) Sym(api.name, #name, missing)
  S(ucp_get_version);
  if (api.ucp_get_version != nullptr) api.ucp_get_version(&api.major, &api.minor, &api.release);
  S(ucp_init_version); S(ucp_config_read); S(ucp_config_release); S(ucp_cleanup); S(ucp_context_print_info);
  S(ucp_worker_create); S(ucp_worker_destroy); S(ucp_worker_query); S(ucp_worker_get_address);
  S(ucp_worker_release_address); S(ucp_worker_progress); S(ucp_worker_get_efd); S(ucp_worker_arm);
  S(ucp_worker_signal); S(ucp_worker_set_am_recv_handler); S(ucp_worker_flush_nbx); S(ucp_ep_create);
  S(ucp_ep_close_nbx); S(ucp_ep_flush_nbx); S(ucp_ep_print_info); S(ucp_mem_map); S(ucp_mem_unmap);
  S(ucp_rkey_pack); S(ucp_rkey_buffer_release); S(ucp_ep_rkey_unpack); S(ucp_rkey_destroy); S(ucp_put_nbx);
  S(ucp_get_nbx); S(ucp_atomic_op_nbx); S(ucp_am_send_nbx); S(ucp_am_recv_data_nbx);
  S(ucp_request_check_status); S(ucp_request_free); S(ucs_status_string);
#undef S
  std::string version = std::to_string(api.major) + "." + std::to_string(api.minor) + "." + std::to_string(api.release);
  if (api.ucp_get_version == nullptr) {
    api.error = api.path + " is not libucp: it has no ucp_get_version";
  } else if (api.major < 1 || (api.major == 1 && api.minor < 9)) {
    api.error = "UCX " + version + " at " + api.path + " is too old: mprun needs >= 1.9 (the nbx API)";
  } else if (!missing.empty()) {
    api.error = "UCX " + version + " at " + api.path + " lacks " + missing;
  }
  return api.error.empty();
}

const char* StatusString(ucs_status_t s) {
  return api.ucs_status_string != nullptr ? api.ucs_status_string(s) : "unknown status";
}

struct Ep {
  ucp_ep_h ep = nullptr;
  std::string peer;
  std::atomic<int> status{0};  // the first error the endpoint saw (ucs_status_t), 0 while healthy
};

// An arriving message too large for UCX's eager protocol: received with
// ucp_am_recv_data_nbx into its own buffer, handed to JS without a copy.
struct Large {
  void* data = nullptr;
  size_t length = 0;
  std::atomic<int> state{UCS_INPROGRESS};
};

struct State {
  ucp_context_h context = nullptr;
  ucp_worker_h worker = nullptr;
  int efd = -1;
  bool multi = false;
  std::vector<std::unique_ptr<Ep>> eps;  // index = ep id (ids are never reused)
  std::vector<ucp_rkey_h> rkeys;         // index = rkey id
  std::vector<ucp_mem_h> memhs;          // index = memh id
  // Inbox: records appended by the AM handler, taken by JavaScript in one batch.
  std::mutex inboxLock;
  std::vector<uint8_t> inbox;
  uint32_t inboxRecords = 0;
  std::unordered_map<uint32_t, Large*> large;
  uint32_t nextLarge = 1;
  // Progress thread.
  std::thread thread;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> lastMainProgress{0};
  int epollFd = -1;
};

State* st = nullptr;

// The control area shared with JavaScript; allocated once per process, never freed
// (JavaScript may hold views of it across close/open).
uint8_t* control = nullptr;
int32_t* statusOf = nullptr;
int64_t* resultOf = nullptr;
int64_t* operandOf = nullptr;  // native only: an atomic's operand lives until it completes
uint32_t* headerOf = nullptr;  // native only: a message's header, 16 bytes per slot
int32_t* ring = nullptr;
int32_t* ctl = nullptr;

size_t ControlBytes() { return kSlots * 4 + kSlots * 8 + kSlots * 4 + kCtlWords * 4; }

void EnsureControl() {
  if (control != nullptr) return;
  control = static_cast<uint8_t*>(aligned_alloc(64, (ControlBytes() + 63) / 64 * 64));
  memset(control, 0, ControlBytes());
  statusOf = reinterpret_cast<int32_t*>(control);
  resultOf = reinterpret_cast<int64_t*>(control + kSlots * 4);
  ring = reinterpret_cast<int32_t*>(control + kSlots * 12);
  ctl = reinterpret_cast<int32_t*>(control + kSlots * 16);
  operandOf = static_cast<int64_t*>(calloc(kSlots, 8));
  headerOf = static_cast<uint32_t*>(calloc(kSlots, 16));
}

inline void StoreRelease(int32_t* p, int32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

int64_t NowNs() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return int64_t(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

// Completion of a slot's operation: runs inside progress (either thread; callbacks
// are serialized by the worker). The ring cannot overflow: it holds kSlots entries
// and at most kSlots operations are in flight.
void Complete(uint32_t slot, ucs_status_t status) {
  StoreRelease(&statusOf[slot], status);
  int32_t tail = __atomic_load_n(&ctl[kCtlRingTail], __ATOMIC_RELAXED);
  ring[uint32_t(tail) % kSlots] = int32_t(slot);
  StoreRelease(&ctl[kCtlRingTail], tail + 1);
}

void SendCallback(void* request, ucs_status_t status, void* user) {
  Complete(uint32_t(reinterpret_cast<uintptr_t>(user)), status);
  api.ucp_request_free(request);
}

void WaitCallback(void* request, ucs_status_t status, void* user) {
  __atomic_store_n(static_cast<int32_t*>(user), status, __ATOMIC_RELEASE);
  api.ucp_request_free(request);
}

void EpErrorHandler(void* arg, ucp_ep_h, ucs_status_t status) {
  Ep* e = static_cast<Ep*>(arg);
  int expected = 0;
  if (e->status.compare_exchange_strong(expected, status)) __atomic_add_fetch(&ctl[kCtlFailedEps], 1, __ATOMIC_RELEASE);
}

// Inbox record: u32 length, u32 source, i32 tag, u32 dtype, u32 large id (0: inline), u32 pad, payload padded to 8.
constexpr size_t kRecordHeader = 24;

void AppendRecord(uint32_t source, int32_t tag, uint32_t dtype, const void* data, size_t length, uint32_t largeId) {
  size_t inlineBytes = largeId == 0 ? length : 0;
  size_t at = st->inbox.size();
  st->inbox.resize(at + kRecordHeader + (inlineBytes + 7) / 8 * 8);
  uint32_t h[6] = {uint32_t(length), source, uint32_t(tag), dtype, largeId, 0};
  memcpy(st->inbox.data() + at, h, kRecordHeader);
  if (inlineBytes > 0) memcpy(st->inbox.data() + at + kRecordHeader, data, inlineBytes);
  st->inboxRecords++;
  StoreRelease(&ctl[kCtlInbox], int32_t(st->inboxRecords));
}

void LargeCallback(void* request, ucs_status_t status, size_t, void* user) {
  static_cast<Large*>(user)->state.store(status, std::memory_order_release);
  api.ucp_request_free(request);
}

// Header of every message: source world rank, tag, dtype (12 bytes).
ucs_status_t AmHandler(void*, const void* header, size_t headerLength, void* data, size_t length, const ucp_am_recv_param_t* param) {
  if (headerLength != 12) return UCS_OK;  // not ours: dropped
  uint32_t h[3];
  memcpy(h, header, 12);
  std::lock_guard<std::mutex> g(st->inboxLock);
  if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) == 0) {
    AppendRecord(h[0], int32_t(h[1]), h[2], data, length, 0);
    return UCS_OK;
  }
  // Rendezvous: the record keeps its place in the order of arrivals; JavaScript
  // delivers it (and whatever follows) once the data is in.
  Large* l = new Large();
  l->length = length;
  l->data = malloc(length > 0 ? length : 1);
  uint32_t id = st->nextLarge++;
  if (st->nextLarge == 0) st->nextLarge = 1;
  st->large[id] = l;
  ucp_request_param_t p;
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_DATATYPE;
  p.cb.recv_am = LargeCallback;
  p.user_data = l;
  p.datatype = ucp_dt_make_contig(1);
  ucs_status_ptr_t r = api.ucp_am_recv_data_nbx(st->worker, data, l->data, length, &p);
  if (r == nullptr) l->state.store(UCS_OK, std::memory_order_release);
  else if (UCS_PTR_IS_ERR(r)) l->state.store(UCS_PTR_STATUS(r), std::memory_order_release);
  AppendRecord(h[0], int32_t(h[1]), h[2], nullptr, length, id);
  return UCS_INPROGRESS;
}

void ProgressThread() {
  epoll_event ev{};
  for (;;) {
    if (st->stop.load(std::memory_order_acquire)) return;
    if (NowNs() - st->lastMainProgress.load(std::memory_order_relaxed) < kIdleNs) {
      timespec nap{0, kNapNs};
      nanosleep(&nap, nullptr);
      continue;
    }
    while (api.ucp_worker_progress(st->worker) != 0) {
    }
    ucs_status_t s = api.ucp_worker_arm(st->worker);
    if (s == UCS_ERR_BUSY) continue;
    if (s != UCS_OK) return;
    epoll_wait(st->epollFd, &ev, 1, 100);
  }
}

// ---- helpers for the bindings ----

Napi::Value Fail(Napi::Env env, const std::string& what, ucs_status_t s) {
  return ThrowCode(env, kCode, what + ": " + StatusString(s));
}

bool Opened(Napi::Env env) {
  if (st != nullptr) return true;
  ThrowCode(env, kCode, "UCX is not open (ucx.open() first)");
  return false;
}

Ep* EpOf(Napi::Env env, Napi::Value v) {
  uint32_t id = v.As<Napi::Number>().Uint32Value();
  if (id >= st->eps.size() || st->eps[id] == nullptr) {
    ThrowCode(env, kCode, "no UCX endpoint " + std::to_string(id));
    return nullptr;
  }
  Ep* e = st->eps[id].get();
  int bad = e->status.load(std::memory_order_acquire);
  if (bad != 0) {
    Fail(env, "UCX endpoint to " + e->peer + " failed", ucs_status_t(bad));
    return nullptr;
  }
  return e;
}

ucp_rkey_h RkeyOf(Napi::Env env, Napi::Value v) {
  uint32_t id = v.As<Napi::Number>().Uint32Value();
  if (id >= st->rkeys.size() || st->rkeys[id] == nullptr) {
    ThrowCode(env, kCode, "no UCX rkey " + std::to_string(id));
    return nullptr;
  }
  return st->rkeys[id];
}

bool SlotOf(Napi::Env env, Napi::Value v, uint32_t* slot) {
  *slot = v.As<Napi::Number>().Uint32Value();
  if (*slot >= kSlots) {
    Napi::RangeError::New(env, "slot out of range").ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

// An operand: a bigint (64-bit) or a number (32-bit values and small 64-bit ones).
int64_t OperandOf(Napi::Value v) {
  if (v.IsBigInt()) {
    bool lossless;
    return v.As<Napi::BigInt>().Int64Value(&lossless);
  }
  double d = v.As<Napi::Number>().DoubleValue();
  if (d < 0) return int64_t(d);
  return int64_t(uint64_t(d));
}

// Issued with a slot: 0 when done at once (the slot's status is set), 1 when it
// completes later through the ring; throws when it cannot start.
Napi::Value Issued(Napi::Env env, ucs_status_ptr_t r, uint32_t slot, const std::string& what, Ep* e) {
  if (r == nullptr) {
    statusOf[slot] = UCS_OK;
    return Napi::Number::New(env, 0);
  }
  if (UCS_PTR_IS_ERR(r)) {
    statusOf[slot] = UCS_PTR_STATUS(r);
    return Fail(env, what + (e != nullptr ? " to " + e->peer : std::string()), UCS_PTR_STATUS(r));
  }
  return Napi::Number::New(env, 1);
}

void PrepareSlot(ucp_request_param_t& p, uint32_t slot) {
  statusOf[slot] = UCS_INPROGRESS;
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  p.cb.send = SendCallback;
  p.user_data = reinterpret_cast<void*>(uintptr_t(slot));
}

// Waits (progressing the worker) until a request without a slot completes.
ucs_status_t WaitRequest(ucs_status_ptr_t r, int32_t* done) {
  if (r == nullptr) return UCS_OK;
  if (UCS_PTR_IS_ERR(r)) return UCS_PTR_STATUS(r);
  while (__atomic_load_n(done, __ATOMIC_ACQUIRE) == UCS_INPROGRESS) api.ucp_worker_progress(st->worker);
  return ucs_status_t(__atomic_load_n(done, __ATOMIC_ACQUIRE));
}

std::string Capture(void (*print)(void*, FILE*), void* obj) {
  char* buf = nullptr;
  size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  if (f == nullptr) return "";
  print(obj, f);
  fclose(f);
  std::string s(buf, len);
  free(buf);
  return s;
}

// ---- bindings ----

// probe(): loads the library if it was not (never throws).
Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool ok = Load();
  Napi::Object o = Napi::Object::New(env);
  o.Set("loaded", ok);
  o.Set("reason", api.error);
  o.Set("path", api.path);
  o.Set("headers", true);
  std::string v = api.ucp_get_version != nullptr ? std::to_string(api.major) + "." + std::to_string(api.minor) + "." + std::to_string(api.release) : "";
  o.Set("version", v);
  return o;
}

std::string openedContextInfo;

// resources(): { ok, reason, contextInfo } of a UCP context made and dropped
// now (or of the open one): whether UCX_TLS leaves a usable transport. Never throws.
Napi::Value Resources(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  auto answer = [&](bool ok, const std::string& reason, const std::string& text) {
    o.Set("ok", ok);
    o.Set("reason", reason);
    o.Set("contextInfo", text);
    return o;
  };
  if (!Load()) return answer(false, api.error, "");
  if (st != nullptr) return answer(true, "", openedContextInfo);
  ucp_config_t* config = nullptr;
  ucs_status_t s = api.ucp_config_read(nullptr, nullptr, &config);
  if (s != UCS_OK) return answer(false, std::string("ucp_config_read (check the UCX_* environment): ") + StatusString(s), "");
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_RMA | UCP_FEATURE_AMO32 | UCP_FEATURE_AMO64 | UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
  ucp_context_h context = nullptr;
  s = api.ucp_init_version(UCP_API_MAJOR, UCP_API_MINOR, &params, config, &context);
  api.ucp_config_release(config);
  if (s != UCS_OK) {
    const char* tls = getenv("UCX_TLS");
    return answer(false, std::string("ucp_init: ") + StatusString(s) + (tls != nullptr ? std::string(" (no usable transport among UCX_TLS=") + tls + ")" : ""), "");
  }
  std::string text = Capture(reinterpret_cast<void (*)(void*, FILE*)>(api.ucp_context_print_info), context);
  api.ucp_cleanup(context);
  return answer(true, "", text);
}

// open({ progressThread, estimatedEps, netOnly }): context + worker; throws when UCX cannot run.
Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Load()) return ThrowCode(env, kCode, api.error);
  if (st != nullptr) return ThrowCode(env, kCode, "UCX is already open in this process");
  Napi::Object opt = info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
  bool wantThread = opt.Get("progressThread").ToBoolean();
  uint32_t estimatedEps = opt.Has("estimatedEps") && opt.Get("estimatedEps").IsNumber() ? opt.Get("estimatedEps").As<Napi::Number>().Uint32Value() : 0;
  EnsureControl();
  memset(control, 0, ControlBytes());

  ucp_config_t* config = nullptr;
  ucs_status_t s = api.ucp_config_read(nullptr, nullptr, &config);
  if (s != UCS_OK) return Fail(env, "ucp_config_read (check the UCX_* environment)", s);
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_NAME;
  params.features = UCP_FEATURE_RMA | UCP_FEATURE_AMO32 | UCP_FEATURE_AMO64 | UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
  params.name = "mprun";
  if (estimatedEps > 0) {
    params.field_mask |= UCP_PARAM_FIELD_ESTIMATED_NUM_EPS;
    params.estimated_num_eps = estimatedEps;
  }
  ucp_context_h context = nullptr;
  s = api.ucp_init_version(UCP_API_MAJOR, UCP_API_MINOR, &params, config, &context);
  api.ucp_config_release(config);
  if (s != UCS_OK) return Fail(env, "ucp_init (UCX " + std::to_string(api.major) + "." + std::to_string(api.minor) + " at " + api.path + ")", s);

  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = wantThread ? UCS_THREAD_MODE_MULTI : UCS_THREAD_MODE_SINGLE;
  ucp_worker_h worker = nullptr;
  s = api.ucp_worker_create(context, &wp, &worker);
  if (s != UCS_OK) {
    api.ucp_cleanup(context);
    return Fail(env, "ucp_worker_create", s);
  }
  ucp_worker_attr_t wa{};
  wa.field_mask = UCP_WORKER_ATTR_FIELD_THREAD_MODE;
  api.ucp_worker_query(worker, &wa);
  int efd = -1;
  s = api.ucp_worker_get_efd(worker, &efd);
  if (s != UCS_OK) {
    api.ucp_worker_destroy(worker);
    api.ucp_cleanup(context);
    return Fail(env, "ucp_worker_get_efd", s);
  }
  st = new State();
  st->context = context;
  st->worker = worker;
  st->efd = efd;
  st->multi = wa.thread_mode == UCS_THREAD_MODE_MULTI;

  ucp_am_handler_param_t hp{};
  hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
  hp.id = kAmId;
  hp.cb = AmHandler;
  hp.flags = UCP_AM_FLAG_WHOLE_MSG;
  s = api.ucp_worker_set_am_recv_handler(worker, &hp);
  if (s != UCS_OK) return Fail(env, "ucp_worker_set_am_recv_handler", s);

  // Addresses: the full one (every transport, for peers on this node) and the network-only one.
  ucp_address_t* addr = nullptr;
  size_t addrLen = 0;
  s = api.ucp_worker_get_address(worker, &addr, &addrLen);
  if (s != UCS_OK) return Fail(env, "ucp_worker_get_address", s);
  Napi::Buffer<uint8_t> address = Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<uint8_t*>(addr), addrLen);
  api.ucp_worker_release_address(worker, addr);

  std::string contextInfo = Capture(reinterpret_cast<void (*)(void*, FILE*)>(api.ucp_context_print_info), context);
  openedContextInfo = contextInfo;

  bool thread = wantThread && st->multi;
  if (thread) {
    st->epollFd = epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    epoll_ctl(st->epollFd, EPOLL_CTL_ADD, efd, &ev);
    st->thread = std::thread(ProgressThread);
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("address", address);
  o.Set("efd", efd);
  o.Set("threadMode", st->multi ? "multi" : "single");
  o.Set("progressThread", thread);
  o.Set("contextInfo", contextInfo);
  o.Set("control", Napi::ArrayBuffer::New(env, control, ControlBytes(), [](Napi::Env, void*) {}));
  o.Set("slots", kSlots);
  return o;
}

void CloseNow() {
  if (st == nullptr) return;
  if (st->thread.joinable()) {
    st->stop.store(true, std::memory_order_release);
    api.ucp_worker_signal(st->worker);
    st->thread.join();
    close(st->epollFd);
  }
  for (auto& r : st->rkeys)
    if (r != nullptr) api.ucp_rkey_destroy(r);
  // Close endpoints (flush mode, bounded: a dead peer's close is forced).
  for (auto& e : st->eps) {
    if (e == nullptr || e->ep == nullptr) continue;
    int32_t done = UCS_INPROGRESS;
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
    p.cb.send = WaitCallback;
    p.user_data = &done;
    p.flags = e->status.load() != 0 ? UCP_EP_CLOSE_FLAG_FORCE : 0;
    ucs_status_ptr_t r = api.ucp_ep_close_nbx(e->ep, &p);
    if (r != nullptr && !UCS_PTR_IS_ERR(r)) {
      int64_t deadline = NowNs() + 1'000'000'000;
      while (__atomic_load_n(&done, __ATOMIC_ACQUIRE) == UCS_INPROGRESS && NowNs() < deadline) api.ucp_worker_progress(st->worker);
      if (__atomic_load_n(&done, __ATOMIC_ACQUIRE) == UCS_INPROGRESS) {
        // The peer does not answer: force-close would need the request gone; leave it to cleanup.
      }
    }
  }
  for (auto& m : st->memhs)
    if (m != nullptr) api.ucp_mem_unmap(st->context, m);
  for (auto& kv : st->large) {
    if (kv.second->state.load() != UCS_INPROGRESS) {
      free(kv.second->data);
      delete kv.second;
    }
  }
  api.ucp_worker_destroy(st->worker);
  api.ucp_cleanup(st->context);
  delete st;
  st = nullptr;
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  CloseNow();
  return info.Env().Undefined();
}

// memMap(view): registers existing memory; { id, rkey, address }.
Napi::Value MemMap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Opened(env)) return env.Undefined();
  uint8_t* data;
  size_t length;
  if (!BytesOf(env, info[0], &data, &length)) return env.Undefined();
  ucp_mem_map_params_t mp{};
  mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  mp.address = data;
  mp.length = length;
  ucp_mem_h memh = nullptr;
  ucs_status_t s = api.ucp_mem_map(st->context, &mp, &memh);
  if (s != UCS_OK) return Fail(env, "ucp_mem_map of " + std::to_string(length) + " bytes", s);
  void* rkey = nullptr;
  size_t rkeyLen = 0;
  s = api.ucp_rkey_pack(st->context, memh, &rkey, &rkeyLen);
  if (s != UCS_OK) {
    api.ucp_mem_unmap(st->context, memh);
    return Fail(env, "ucp_rkey_pack", s);
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", double(st->memhs.size()));
  o.Set("rkey", Napi::Buffer<uint8_t>::Copy(env, static_cast<uint8_t*>(rkey), rkeyLen));
  o.Set("address", double(reinterpret_cast<uintptr_t>(data)));
  api.ucp_rkey_buffer_release(rkey);
  st->memhs.push_back(memh);
  return o;
}

Napi::Value MemUnmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Opened(env)) return env.Undefined();
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  if (id < st->memhs.size() && st->memhs[id] != nullptr) {
    api.ucp_mem_unmap(st->context, st->memhs[id]);
    st->memhs[id] = nullptr;
  }
  return env.Undefined();
}

// epCreate(address, peer): an endpoint (connection starts now, completes lazily); its id.
Napi::Value EpCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Opened(env)) return env.Undefined();
  uint8_t* addr;
  size_t addrLen;
  if (!BytesOf(env, info[0], &addr, &addrLen)) return env.Undefined();
  std::string peer = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "a peer";
  auto e = std::make_unique<Ep>();
  e->peer = peer;
  ucp_ep_params_t ep{};
  ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER | UCP_EP_PARAM_FIELD_NAME;
  ep.address = reinterpret_cast<const ucp_address_t*>(addr);
  ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  ep.err_handler.cb = EpErrorHandler;
  ep.err_handler.arg = e.get();
  ep.name = e->peer.c_str();
  if (addrLen < 8) return ThrowCode(env, kCode, "cannot reach " + peer + ": its UCX worker address is " + std::to_string(addrLen) + " bytes");
  ucs_status_t s = api.ucp_ep_create(st->worker, &ep, &e->ep);
  if (s != UCS_OK) return Fail(env, "cannot reach " + peer + " (ucp_ep_create)", s);
  st->eps.push_back(std::move(e));
  return Napi::Number::New(env, double(st->eps.size() - 1));
}

// epInfo(ep): the transports of the endpoint's lanes ("tcp", "sysv,cma", ...), from ucp_ep_print_info.
Napi::Value EpInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Opened(env)) return env.Undefined();
  Ep* e = EpOf(env, info[0]);
  if (e == nullptr) return env.Undefined();
  return Napi::String::New(env, Capture(reinterpret_cast<void (*)(void*, FILE*)>(api.ucp_ep_print_info), e->ep));
}

// epStatus(ep): 0 while healthy, else the ucs_status_t of its failure.
Napi::Value EpStatus(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Opened(env)) return env.Undefined();
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  if (id >= st->eps.size() || st->eps[id] == nullptr) return Napi::Number::New(env, 0);
  return Napi::Number::New(env, st->eps[id]->status.load());
}

Napi::Value EpClose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Opened(env)) return env.Undefined();
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  if (id >= st->eps.size() || st->eps[id] == nullptr) return env.Undefined();
  Ep* e = st->eps[id].get();
  int32_t done = UCS_INPROGRESS;
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
  p.cb.send = WaitCallback;
  p.user_data = &done;
  p.flags = e->status.load() != 0 ? UCP_EP_CLOSE_FLAG_FORCE : 0;
  ucs_status_ptr_t r = api.ucp_ep_close_nbx(e->ep, &p);
  if (r != nullptr && !UCS_PTR_IS_ERR(r)) {
    int64_t deadline = NowNs() + 1'000'000'000;
    while (__atomic_load_n(&done, __ATOMIC_ACQUIRE) == UCS_INPROGRESS && NowNs() < deadline) api.ucp_worker_progress(st->worker);
  }
  st->eps[id].reset();
  return env.Undefined();
}

Napi::Value RkeyUnpack(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Opened(env)) return env.Undefined();
  Ep* e = EpOf(env, info[0]);
  if (e == nullptr) return env.Undefined();
  uint8_t* buf;
  size_t len;
  if (!BytesOf(env, info[1], &buf, &len)) return env.Undefined();
  ucp_rkey_h rkey = nullptr;
  ucs_status_t s = api.ucp_ep_rkey_unpack(e->ep, buf, &rkey);
  if (s != UCS_OK) return Fail(env, "the heap key of " + e->peer + " does not unpack (ucp_ep_rkey_unpack)", s);
  st->rkeys.push_back(rkey);
  return Napi::Number::New(env, double(st->rkeys.size() - 1));
}

Napi::Value RkeyDestroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Opened(env)) return env.Undefined();
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  if (id < st->rkeys.size() && st->rkeys[id] != nullptr) {
    api.ucp_rkey_destroy(st->rkeys[id]);
    st->rkeys[id] = nullptr;
  }
  return env.Undefined();
}

// put(ep, rkey, remoteAddress, src): returns when src is reusable (OpenSHMEM's
// blocking put: local completion; remote completion is flush()).
Napi::Value Put(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (st == nullptr) return ThrowCode(env, kCode, "UCX is not open");
  Ep* e = EpOf(env, info[0]);
  if (e == nullptr) return env.Undefined();
  ucp_rkey_h rkey = RkeyOf(env, info[1]);
  if (rkey == nullptr) return env.Undefined();
  uint64_t raddr = uint64_t(info[2].As<Napi::Number>().DoubleValue());
  uint8_t* src;
  size_t len;
  if (!BytesOf(env, info[3], &src, &len)) return env.Undefined();
  int32_t done = UCS_INPROGRESS;
  ucp_request_param_t p;
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  p.cb.send = WaitCallback;
  p.user_data = &done;
  ucs_status_t s = WaitRequest(api.ucp_put_nbx(e->ep, src, len, raddr, rkey, &p), &done);
  if (s != UCS_OK) return Fail(env, "put of " + std::to_string(len) + " bytes to " + e->peer, s);
  return env.Undefined();
}

// get(ep, rkey, remoteAddress, dst, slot): 0 done, 1 pending (the slot completes).
Napi::Value Get(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (st == nullptr) return ThrowCode(env, kCode, "UCX is not open");
  Ep* e = EpOf(env, info[0]);
  if (e == nullptr) return env.Undefined();
  ucp_rkey_h rkey = RkeyOf(env, info[1]);
  if (rkey == nullptr) return env.Undefined();
  uint64_t raddr = uint64_t(info[2].As<Napi::Number>().DoubleValue());
  uint8_t* dst;
  size_t len;
  if (!BytesOf(env, info[3], &dst, &len)) return env.Undefined();
  uint32_t slot;
  if (!SlotOf(env, info[4], &slot)) return env.Undefined();
  ucp_request_param_t p;
  PrepareSlot(p, slot);
  return Issued(env, api.ucp_get_nbx(e->ep, dst, len, raddr, rkey, &p), slot, "get of " + std::to_string(len) + " bytes", e);
}

// atomic(ep, rkey, remoteAddress, op, size, operand, compare, slot): op is
// UCP's (ADD 0, SWAP 1, CSWAP 2); the old value lands in result[slot].
Napi::Value Atomic(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (st == nullptr) return ThrowCode(env, kCode, "UCX is not open");
  Ep* e = EpOf(env, info[0]);
  if (e == nullptr) return env.Undefined();
  ucp_rkey_h rkey = RkeyOf(env, info[1]);
  if (rkey == nullptr) return env.Undefined();
  uint64_t raddr = uint64_t(info[2].As<Napi::Number>().DoubleValue());
  uint32_t op = info[3].As<Napi::Number>().Uint32Value();
  uint32_t size = info[4].As<Napi::Number>().Uint32Value();
  uint32_t slot;
  if (!SlotOf(env, info[7], &slot)) return env.Undefined();
  if (op > UCP_ATOMIC_OP_CSWAP || (size != 4 && size != 8)) {
    Napi::RangeError::New(env, "atomic: bad operation or size").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int64_t operand = OperandOf(info[5]);
  ucp_request_param_t p;
  PrepareSlot(p, slot);
  p.op_attr_mask |= UCP_OP_ATTR_FIELD_DATATYPE | UCP_OP_ATTR_FIELD_REPLY_BUFFER;
  p.datatype = ucp_dt_make_contig(size);
  p.reply_buffer = &resultOf[slot];
  resultOf[slot] = 0;
  if (op == UCP_ATOMIC_OP_CSWAP) {
    // buffer: the compare value; reply_buffer: the new value in, the old value out.
    int64_t compare = OperandOf(info[6]);
    if (size == 4) {
      int32_t c = int32_t(compare), n = int32_t(operand);
      memcpy(&operandOf[slot], &c, 4);
      memcpy(&resultOf[slot], &n, 4);
    } else {
      operandOf[slot] = compare;
      resultOf[slot] = operand;
    }
  } else if (size == 4) {
    int32_t v = int32_t(operand);
    memcpy(&operandOf[slot], &v, 4);
  } else {
    operandOf[slot] = operand;
  }
  return Issued(env, api.ucp_atomic_op_nbx(e->ep, ucp_atomic_op_t(op), &operandOf[slot], 1, raddr, rkey, &p), slot, "atomic", e);
}

// flush(ep | -1, slot): every operation on the endpoint (or the worker) complete at its target.
Napi::Value Flush(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (st == nullptr) return ThrowCode(env, kCode, "UCX is not open");
  uint32_t slot;
  if (!SlotOf(env, info[1], &slot)) return env.Undefined();
  ucp_request_param_t p;
  PrepareSlot(p, slot);
  double id = info[0].As<Napi::Number>().DoubleValue();
  if (id < 0) return Issued(env, api.ucp_worker_flush_nbx(st->worker, &p), slot, "flush", nullptr);
  Ep* e = EpOf(env, info[0]);
  if (e == nullptr) return env.Undefined();
  return Issued(env, api.ucp_ep_flush_nbx(e->ep, &p), slot, "flush", e);
}

// send(ep, source, tag, dtype, payload, slot): 0 sent (payload reusable), 1 pending.
Napi::Value Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (st == nullptr) return ThrowCode(env, kCode, "UCX is not open");
  Ep* e = EpOf(env, info[0]);
  if (e == nullptr) return env.Undefined();
  uint8_t* data;
  size_t len;
  if (!BytesOf(env, info[4], &data, &len)) return env.Undefined();
  uint32_t slot;
  if (!SlotOf(env, info[5], &slot)) return env.Undefined();
  ucp_request_param_t p;
  PrepareSlot(p, slot);
  p.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FIELD_DATATYPE;
  p.datatype = ucp_dt_make_contig(1);
  p.flags = 0;
  // UCX 1.13 has no UCP_AM_SEND_FLAG_COPY_HEADER: a rendezvous send reads the
  // header after this returns, so it lives in the slot until completion.
  uint32_t* header = &headerOf[slot * 4];
  header[0] = info[1].As<Napi::Number>().Uint32Value();
  header[1] = uint32_t(info[2].As<Napi::Number>().Int32Value());
  header[2] = info[3].As<Napi::Number>().Uint32Value();
  return Issued(env, api.ucp_am_send_nbx(e->ep, kAmId, header, 12, data, len, &p), slot, "send of " + std::to_string(len) + " bytes", e);
}

// progress(): progresses the worker until it has nothing to do; the number of events.
Napi::Value Progress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (st == nullptr) return Napi::Number::New(env, 0);
  if (st->thread.joinable()) st->lastMainProgress.store(NowNs(), std::memory_order_relaxed);
  unsigned n = 0, k;
  int rounds = 0;
  while ((k = api.ucp_worker_progress(st->worker)) != 0 && ++rounds < 64) n += k;
  return Napi::Number::New(env, n);
}

// arm(): true when the caller may sleep on the event fd (nothing pending).
Napi::Value Arm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Opened(env)) return env.Undefined();
  ucs_status_t s = api.ucp_worker_arm(st->worker);
  if (s == UCS_OK) return Napi::Boolean::New(env, true);
  if (s == UCS_ERR_BUSY) return Napi::Boolean::New(env, false);
  return Fail(env, "ucp_worker_arm", s);
}

// takeMessages(): the records appended since the last call, as one ArrayBuffer, or null.
Napi::Value TakeMessages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (st == nullptr) return env.Null();
  std::vector<uint8_t>* batch;
  {
    std::lock_guard<std::mutex> g(st->inboxLock);
    if (st->inboxRecords == 0) return env.Null();
    batch = new std::vector<uint8_t>(std::move(st->inbox));
    st->inbox = std::vector<uint8_t>();
    st->inbox.reserve(batch->capacity() < 65536 ? 65536 : batch->capacity());
    st->inboxRecords = 0;
    StoreRelease(&ctl[kCtlInbox], 0);
  }
  return Napi::ArrayBuffer::New(env, batch->data(), batch->size(), [](Napi::Env, void*, std::vector<uint8_t>* v) { delete v; }, batch);
}

// takeLarge(id): the message's bytes once received (an ArrayBuffer that owns them), else null.
Napi::Value TakeLarge(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Opened(env)) return env.Undefined();
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  Large* l;
  {
    std::lock_guard<std::mutex> g(st->inboxLock);
    auto it = st->large.find(id);
    if (it == st->large.end()) return ThrowCode(env, kCode, "no large message " + std::to_string(id));
    l = it->second;
    int s = l->state.load(std::memory_order_acquire);
    if (s == UCS_INPROGRESS) return env.Null();
    st->large.erase(it);
    if (s != UCS_OK) {
      std::string what = "receiving a message of " + std::to_string(l->length) + " bytes";
      free(l->data);
      delete l;
      return Fail(env, what, ucs_status_t(s));
    }
  }
  void* data = l->data;
  size_t length = l->length;
  delete l;
  return Napi::ArrayBuffer::New(env, data, length, [](Napi::Env, void* d) { free(d); });
}

Napi::Value StatusStringJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Napi::String::New(env, StatusString(ucs_status_t(info[0].As<Napi::Number>().Int32Value())));
}

// epFailure(ep): the endpoint's peer name and failure ("" while healthy).
Napi::Value EpFailure(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (st == nullptr) return Napi::String::New(env, "");
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  if (id >= st->eps.size() || st->eps[id] == nullptr) return Napi::String::New(env, "");
  int s = st->eps[id]->status.load();
  return Napi::String::New(env, s == 0 ? "" : StatusString(ucs_status_t(s)));
}

}  // namespace

void InitUcx(Napi::Env env, Napi::Object exports) {
  Napi::Object u = Napi::Object::New(env);
  u.Set("probe", Napi::Function::New(env, Probe));
  u.Set("resources", Napi::Function::New(env, Resources));
  u.Set("open", Napi::Function::New(env, Open));
  u.Set("close", Napi::Function::New(env, Close));
  u.Set("memMap", Napi::Function::New(env, MemMap));
  u.Set("memUnmap", Napi::Function::New(env, MemUnmap));
  u.Set("epCreate", Napi::Function::New(env, EpCreate));
  u.Set("epInfo", Napi::Function::New(env, EpInfo));
  u.Set("epStatus", Napi::Function::New(env, EpStatus));
  u.Set("epFailure", Napi::Function::New(env, EpFailure));
  u.Set("epClose", Napi::Function::New(env, EpClose));
  u.Set("rkeyUnpack", Napi::Function::New(env, RkeyUnpack));
  u.Set("rkeyDestroy", Napi::Function::New(env, RkeyDestroy));
  u.Set("put", Napi::Function::New(env, Put));
  u.Set("get", Napi::Function::New(env, Get));
  u.Set("atomic", Napi::Function::New(env, Atomic));
  u.Set("flush", Napi::Function::New(env, Flush));
  u.Set("send", Napi::Function::New(env, Send));
  u.Set("progress", Napi::Function::New(env, Progress));
  u.Set("arm", Napi::Function::New(env, Arm));
  u.Set("takeMessages", Napi::Function::New(env, TakeMessages));
  u.Set("takeLarge", Napi::Function::New(env, TakeLarge));
  u.Set("statusString", Napi::Function::New(env, StatusStringJs));
  exports.Set("ucx", u);
}

#else  // no UCX headers at build time: the transport reports why.

namespace {
Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("loaded", false);
  o.Set("reason", "the addon was built without UCX's headers (Debian: apt-get install libucx-dev, then npm install)");
  o.Set("path", "");
  o.Set("headers", false);
  o.Set("version", "");
  return o;
}
}  // namespace

void InitUcx(Napi::Env env, Napi::Object exports) {
  Napi::Object u = Napi::Object::New(env);
  u.Set("probe", Napi::Function::New(env, Probe));
  exports.Set("ucx", u);
}

#endif

}  // namespace mprun
