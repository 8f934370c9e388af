// The UCX binding's setup calls: probe, open/close, memory registration,
// endpoints and rkeys. Native because libucp is a C library whose handles,
// requests and callbacks must stay in C (ucx-lib.cc says why in full).
#include "ucx.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <sys/epoll.h>
#include <unistd.h>

namespace mprun {

#if MPRUN_HAVE_UCX_HEADERS

namespace ucx {

std::string openedContextInfo;

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

// open({ progressThread, estimatedEps, spinUs }): context + worker; throws when UCX cannot run.
// spinUs: how long the progress thread polls after serving before it sleeps (0: never).
Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Load()) return ThrowCode(env, kCode, api.error);
  if (st != nullptr) return ThrowCode(env, kCode, "UCX is already open in this process");
  Napi::Object opt = info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
  bool wantThread = opt.Get("progressThread").ToBoolean();
  uint32_t estimatedEps = opt.Has("estimatedEps") && opt.Get("estimatedEps").IsNumber() ? opt.Get("estimatedEps").As<Napi::Number>().Uint32Value() : 0;
  const double spinUs = opt.Has("spinUs") && opt.Get("spinUs").IsNumber() ? opt.Get("spinUs").As<Napi::Number>().DoubleValue() : 0;
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
  // With the progress thread the worker is SERIALIZED: our WorkerLock orders the two threads' calls (ucx.h).
  wp.thread_mode = wantThread ? UCS_THREAD_MODE_SERIALIZED : UCS_THREAD_MODE_SINGLE;
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
  st->twoThreads = wa.thread_mode != UCS_THREAD_MODE_SINGLE;
  st->failArm = getenv("MPRUN_UCX_FAIL_ARM") != nullptr;
  st->spinNs = spinUs > 0 ? static_cast<int64_t>(std::min(spinUs, 1e6) * 1000) : 0;  // at most a second

  ucp_am_handler_param_t hp{};
  hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
  hp.id = kAmId;
  hp.cb = AmHandler;
  hp.flags = UCP_AM_FLAG_WHOLE_MSG;
  s = api.ucp_worker_set_am_recv_handler(worker, &hp);
  if (s == UCS_OK) s = SetPutHandlers(worker);
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

  // Either thread waits on the worker's event fd: the progress thread to progress
  // the worker, the wake thread (progress thread off) to wake the rank asleep.
  bool thread = wantThread && st->twoThreads;
  st->epollFd = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  epoll_ctl(st->epollFd, EPOLL_CTL_ADD, efd, &ev);
  st->progressing = thread;
  st->thread = std::thread(thread ? ProgressThread : WakeThread);
  Napi::Object o = Napi::Object::New(env);
  o.Set("address", address);
  o.Set("efd", efd);
  o.Set("threadMode", wa.thread_mode == UCS_THREAD_MODE_MULTI ? "multi" : wa.thread_mode == UCS_THREAD_MODE_SERIALIZED ? "serialized" : "single");
  o.Set("progressThread", thread);
  o.Set("contextInfo", contextInfo);
  o.Set("control", Napi::ArrayBuffer::New(env, control, ControlBytes(), [](Napi::Env, void*) {}));
  o.Set("slots", kSlots);
  return o;
}

// doorbell(i32, doorIndex, sleepingIndex, wakeMessage, wakeHeap): the rank's
// doorbell and sleeping words in its node's control segment and the wake
// classes (transports/shm/control.ts), for the progress thread to wake the rank
// (runtime/wait.ts gives them). A no-op while UCX is not open; close() forgets them.
// true (a native thread runs once UCX is open, ucx-lib.cc): it waits on the sleeping
// word while the rank polls, so the rank futex-wakes that word when it goes to sleep.
Napi::Value Doorbell(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (st == nullptr) return Napi::Boolean::New(env, false);
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    Napi::TypeError::New(env, "doorbell: the words must be in an Int32Array").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Int32Array words = info[0].As<Napi::Int32Array>();
  uint32_t door = info[1].As<Napi::Number>().Uint32Value();
  uint32_t sleeping = info[2].As<Napi::Number>().Uint32Value();
  if (door >= words.ElementLength() || sleeping >= words.ElementLength()) {
    Napi::RangeError::New(env, "doorbell: word index out of range").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  st->wakeMessage = info[3].As<Napi::Number>().Int32Value();
  st->wakeHeap = info[4].As<Napi::Number>().Int32Value();
  st->doorRef = Napi::Persistent(words.As<Napi::Object>());
  st->door.store(words.Data() + door, std::memory_order_relaxed);
  st->sleeping.store(words.Data() + sleeping, std::memory_order_release);
  return Napi::Boolean::New(env, st->thread.joinable());
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  CloseNow();
  return info.Env().Undefined();
}

// memMap(view): registers existing memory; { id, rkey, address }.
Napi::Value MemMap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Opened(env)) return env.Undefined();
  WorkerLock lock;
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
  st->regions.push_back(Region{uint64_t(reinterpret_cast<uintptr_t>(data)), uint64_t(length)});
  return o;
}

Napi::Value MemUnmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Opened(env)) return env.Undefined();
  WorkerLock lock;
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  if (id < st->memhs.size() && st->memhs[id] != nullptr) {
    api.ucp_mem_unmap(st->context, st->memhs[id]);
    st->memhs[id] = nullptr;
    st->regions[id].length = 0;
  }
  return env.Undefined();
}

// epCreate(address, peer): an endpoint (connection starts now, completes lazily); its id.
Napi::Value EpCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Opened(env)) return env.Undefined();
  WorkerLock lock;
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
  e->id = uint32_t(st->eps.size());
  st->eps.push_back(std::move(e));
  return Napi::Number::New(env, double(st->eps.size() - 1));
}

// epInfo(ep): the transports of the endpoint's lanes ("tcp", "sysv,cma", ...), from ucp_ep_print_info.
Napi::Value EpInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Opened(env)) return env.Undefined();
  WorkerLock lock;
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
  WorkerLock lock;
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  if (id >= st->eps.size() || st->eps[id] == nullptr) return env.Undefined();
  CloseEndpoint(st->eps[id].get());
  FailPutFlushes(st->eps[id].get(), UCS_ERR_CANCELED);  // acknowledgements that can no longer come: no flush waits forever
  st->eps[id].reset();
  return env.Undefined();
}

Napi::Value RkeyUnpack(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Opened(env)) return env.Undefined();
  WorkerLock lock;
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
  WorkerLock lock;
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  if (id < st->rkeys.size() && st->rkeys[id] != nullptr) {
    api.ucp_rkey_destroy(st->rkeys[id]);
    st->rkeys[id] = nullptr;
  }
  return env.Undefined();
}

}  // namespace ucx

void InitUcx(Napi::Env env, Napi::Object exports) {
  using namespace ucx;
  Napi::Object u = Napi::Object::New(env);
  u.Set("probe", Napi::Function::New(env, Probe));
  u.Set("resources", Napi::Function::New(env, Resources));
  u.Set("open", Napi::Function::New(env, Open));
  u.Set("close", Napi::Function::New(env, Close));
  u.Set("doorbell", Napi::Function::New(env, Doorbell));
  u.Set("memMap", Napi::Function::New(env, MemMap));
  u.Set("memUnmap", Napi::Function::New(env, MemUnmap));
  u.Set("epCreate", Napi::Function::New(env, EpCreate));
  u.Set("epInfo", Napi::Function::New(env, EpInfo));
  u.Set("epStatus", Napi::Function::New(env, EpStatus));
  u.Set("epClose", Napi::Function::New(env, EpClose));
  InitOps(env, u);
  InitPuts(env, u);
  u.Set("rkeyUnpack", Napi::Function::New(env, RkeyUnpack));
  u.Set("rkeyDestroy", Napi::Function::New(env, RkeyDestroy));
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

