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
// is registered once at wire-up, not per operation);
// UCX_TCP_TX_SEG_SIZE and UCX_TCP_RX_SEG_SIZE 128K when neither is set (UCX's
// 8 KiB sends and 64 KiB receives cut a 1 MiB put into 128 sendmsg calls and
// as many progress rounds of the target: 1.3-1.6 GB/s across the namespace
// link, with the same 8-byte latency at any size). Measured on two machines:
// one gave 4.0-4.6 GB/s at 256 KiB and a little less at 128 KiB; the next
// (2026-12-02, 6 alternating runs) 128 KiB against 256 KiB: 1 MiB get 2486
// against 1639 MB/s (UCX's software get replies in bcopy segments), put 2119
// against 1876, messages 1394 against 1474. Both or neither: UCX refuses a
// send segment larger than the receive segment).
//
// Progress thread (optional, open({ progressThread })): waits on the worker's
// event fd and progresses the worker (SERIALIZED mode: our WorkerLock, ucx.h) while
// the JavaScript thread has not progressed it for kIdleNs. While JavaScript is
// itself polling, the thread naps (kNapNs doubling to kMaxNapNs) instead of contending for the worker lock,
// so a rank that waits costs the same latency as without the thread. A rank
// that stopped polling to sleep on its doorbell futex (runtime/wait.ts) is
// served at once, and woken through its doorbell when the thread took in
// something for it: a completion or a message (WAKE_MESSAGE), or a peer's
// put or atomic on its heap (WAKE_HEAP). Before the doorbell was rung here, a
// message or a put's flush (UCX's TCP transport acknowledges puts from the
// target's progress) waited for the sleeper's 20 ms slice to end.
#include "ucx.h"
#include "words.h"

#if MPRUN_HAVE_UCX_HEADERS

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <dlfcn.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <sched.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

namespace mprun::ucx {

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

// UCX's TCP segment sizes when the user sets neither (see the environment above).
constexpr const char* kTcpSegSize = "128K";

// Opens libucp and resolves every function once; afterwards api.error says why not.
bool Load() {
  if (loadTried) return api.error.empty();
  loadTried = true;
  setenv("UCX_ERROR_SIGNALS", "", 0);
  setenv("UCX_MEM_EVENTS", "n", 0);
  if (getenv("UCX_TCP_TX_SEG_SIZE") == nullptr && getenv("UCX_TCP_RX_SEG_SIZE") == nullptr) {
    setenv("UCX_TCP_TX_SEG_SIZE", kTcpSegSize, 1);
    setenv("UCX_TCP_RX_SEG_SIZE", kTcpSegSize, 1);
  }
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
  StoreRelease(&ctl[kCtlRingTail], int32_t(uint32_t(tail) + 1u));  // wraps, as slots.ts reads it
  st->events.fetch_add(1, std::memory_order_release);
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
  FailPutFlushes(e, status);
  st->events.fetch_add(1, std::memory_order_release);
}


// ControlSegment.ring (words.h RingDoor) on the rank's doorbell, once it gave one.
void RingRank(int32_t wake) {
  int32_t* sleeping = st->sleeping.load(std::memory_order_acquire);
  if (sleeping != nullptr) words::RingDoorAfterStores(sleeping, st->door.load(std::memory_order_relaxed), wake);
}

// Whether the rank has published that it sleeps (or is about to) on its doorbell.
bool RankSleeps() {
  int32_t* sleeping = st->sleeping.load(std::memory_order_acquire);
  return sleeping != nullptr && words::Asleep(__atomic_load_n(sleeping, __ATOMIC_SEQ_CST));
}

void ProgressThread() {
  epoll_event ev{};
  // Each nap wakes this thread on a core where a rank may be spinning: at
  // 200 us a nap, those wake-ups (5,000 a second, on 2 cores shared by both
  // nodes' ranks) doubled two-sided latency across the namespace link (38 us
  // one way, against 18-21 us without the thread or with 20 ms naps). So the
  // naps double while the rank keeps polling, and start short again once the
  // thread has had to progress: a rank that starts computing is served within
  // kMaxNapNs, and at once when it sleeps (the futex below).
  long napNs = kNapNs;
  int64_t servedAt = 0;
  bool armFailed = false;
  for (;;) {
    if (st->stop.load(std::memory_order_acquire)) return;
    // The rank polls (or is inside a call into the worker): nap rather than wait for the lock.
    bool polling = (NowNs() - st->lastMainProgress.load(std::memory_order_relaxed) < kIdleNs && !RankSleeps()) || st->mainWaiting.load(std::memory_order_relaxed) > 0;
    if (polling || !st->workerLock.try_lock()) {
      // The nap is a futex wait on the sleeping word, which the rank sets and
      // wakes just before it sleeps (runtime/wait.ts): the thread then serves it
      // at once. A plain nap added up to kNapNs to every wait that outlasted the
      // rank's spin (what arrived meanwhile waited for the nap to end).
      timespec nap{0, napNs};
      // (The word's generation moves when the rank publishes a sleep: a wait on its awake value.)
      int32_t* sleeping = st->sleeping.load(std::memory_order_acquire);
      const int32_t word = sleeping != nullptr ? __atomic_load_n(sleeping, __ATOMIC_SEQ_CST) : 0;
      if (sleeping == nullptr) nanosleep(&nap, nullptr);
      else if (!words::Asleep(word)) syscall(SYS_futex, sleeping, FUTEX_WAIT, word, &nap, nullptr, 0);
      napNs = std::min(2 * napNs, kMaxNapNs);
      continue;
    }
    napNs = kNapNs;
    uint32_t before = st->events.load(std::memory_order_acquire);
    // At most 64 rounds under the lock, as Progress() (ucx-ops.cc): a stream of peers' requests
    // kept ucp_worker_progress returning work, and this thread held the worker from the rank
    // (every put, send and progress of its own waits on the lock) for as long as it lasted.
    unsigned did = 0, k = 0;
    int round = 0;
    for (; round < 64 && (k = api.ucp_worker_progress(st->worker)) != 0; round++) did += k;
    const bool capped = round == 64;
    // Where the node leaves a core free (spinNs > 0), the thread polls on for spinNs after it
    // served something, yielding at each turn, as the agents' serving thread does (amo.h
    // WaitEvents): the next request of a peer in a loop then finds it awake, where waking it
    // from epoll cost about 7 us of every get, atomic and put+quiet across the namespace link.
    const int64_t now = NowNs();
    if (did > 0) servedAt = now;
    const bool spin = st->spinNs > 0 && now - servedAt < st->spinNs;
    ucs_status_t s = spin ? UCS_OK : st->failArm ? UCS_ERR_IO_ERROR : api.ucp_worker_arm(st->worker);
    st->workerLock.unlock();
    // Rung only now, with the worker's lock released: the rank woken here may
    // take this thread's core at once, and the first thing it does is use the
    // worker. Our completions and messages are WAKE_MESSAGE; any other event
    // may have been a peer's put or atomic on the heap (or a get: a spurious
    // wake-up for a rank waiting on its memory, which checks and sleeps again).
    if (st->events.load(std::memory_order_acquire) != before) RingRank(st->wakeMessage | st->wakeHeap);
    else if (did > 0) RingRank(st->wakeHeap);
    // Capped: a yield, so that a rank waiting on the lock takes it (a mutex is not handed over).
    if (spin || capped) {
      sched_yield();
      continue;
    }
    if (s == UCS_ERR_BUSY) continue;
    if (s != UCS_OK) {
      // No event fd to sleep on: the thread serves by polling, a round a millisecond, and says
      // so once. It returned here before, silently: the rank's peers then waited on it for as
      // long as it computed, and a message to a sleeping rank for the end of its 20 ms slice.
      if (!armFailed) dprintf(2, "mprun: the UCX progress thread cannot arm the worker's event fd (ucp_worker_arm: %s); it polls every millisecond instead\n", StatusString(s));
      armFailed = true;
      timespec ms{0, 1'000'000};
      nanosleep(&ms, nullptr);
      continue;
    }
    epoll_wait(st->epollFd, &ev, 1, 100);
  }
}

// Without the progress thread (MPRUN_UCX_PROGRESS_THREAD=0) nothing else
// watched the worker while the rank slept on its doorbell: a message or a
// put's acknowledgement then waited for the end of the rank's 20 ms slice, and
// a ping-pong took 6.5 ms a message across the namespace link. This thread
// never calls UCP (the worker stays SINGLE-threaded): the rank arms the worker
// just before it sleeps (runtime/wait.ts, beforeSleep), and this thread waits
// on the worker's event fd while the rank's sleeping word is set, and rings
// its doorbell when something arrives.
void WakeThread() {
  epoll_event ev{};
  // The arm count when this thread last rang: the fd stays readable until the rank
  // progresses the worker, so it waits for the rank's next arm before it looks again.
  // (Waiting for the sleeping word to clear instead missed a rank that woke and slept
  // again in between, and held every later message for the rank's 20 ms slice.)
  uint32_t rungAt = UINT32_MAX;
  while (!st->stop.load(std::memory_order_acquire)) {
    int32_t* sleeping = st->sleeping.load(std::memory_order_acquire);
    timespec nap{0, 100'000'000};
    if (sleeping == nullptr) {
      nanosleep(&nap, nullptr);  // until doorbell() names the rank's words
      continue;
    }
    int32_t s = __atomic_load_n(sleeping, __ATOMIC_SEQ_CST);
    uint32_t armed = st->arms.load(std::memory_order_acquire);
    if (!words::Asleep(s) || armed == rungAt) {
      // The rank futex-wakes this word once it has armed the worker and goes to sleep.
      syscall(SYS_futex, sleeping, FUTEX_WAIT, s, &nap, nullptr, 0);
      continue;
    }
    if (epoll_wait(st->epollFd, &ev, 1, 100) <= 0) continue;
    RingRank(st->wakeMessage | st->wakeHeap);
    rungAt = armed;
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

std::string Describe(const char* op, size_t bytes, const Ep* e) {
  std::string what = op;
  if (bytes != kNoBytes) what += " of " + std::to_string(bytes) + " bytes";
  if (e != nullptr) what += " to " + e->peer;
  return what;
}

// Issued with a slot: 0 when done at once (the slot's status is set), 1 when it
// completes later through the ring; throws when it cannot start. The operation's
// description is made only then: not on every put and send.
Napi::Value Issued(Napi::Env env, ucs_status_ptr_t r, uint32_t slot, const char* op, size_t bytes, Ep* e) {
  if (r == nullptr) {
    statusOf[slot] = UCS_OK;
    return Napi::Number::New(env, 0);
  }
  if (UCS_PTR_IS_ERR(r)) {
    statusOf[slot] = UCS_PTR_STATUS(r);
    return Fail(env, Describe(op, bytes, e), UCS_PTR_STATUS(r));
  }
  return Napi::Number::New(env, 1);
}

void PrepareSlot(ucp_request_param_t& p, uint32_t slot) {
  statusOf[slot] = UCS_INPROGRESS;
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  p.cb.send = SendCallback;
  p.user_data = reinterpret_cast<void*>(uintptr_t(slot));
}

// Waits (progressing the worker) until a request without a slot completes. The
// rank polls here (a large put waits for the socket to take its data): the
// progress thread naps meanwhile rather than contend for the worker.
ucs_status_t WaitRequest(ucs_status_ptr_t r, int32_t* done) {
  if (r == nullptr) return UCS_OK;
  if (UCS_PTR_IS_ERR(r)) return UCS_PTR_STATUS(r);
  bool thread = st->progressing;
  while (__atomic_load_n(done, __ATOMIC_ACQUIRE) == UCS_INPROGRESS) {
    if (thread) st->lastMainProgress.store(NowNs(), std::memory_order_relaxed);
    api.ucp_worker_progress(st->worker);
  }
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

// Closes one endpoint: flush mode, bounded by a second; a failed peer's close is forced.
// A peer that does not answer in time leaves its request to UCX's cleanup.
void CloseEndpoint(Ep* e) {
  // No completion callback: one writing into this frame would outlive it when the close
  // takes longer than the deadline (it completes later, in a progress or the worker's
  // destruction). The request is polled, and freed either way: UCX releases a request freed
  // before it completes when it does.
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  p.flags = e->status.load() != 0 ? UCP_EP_CLOSE_FLAG_FORCE : 0;
  ucs_status_ptr_t r = api.ucp_ep_close_nbx(e->ep, &p);
  if (r != nullptr && !UCS_PTR_IS_ERR(r)) {
    int64_t deadline = NowNs() + 1'000'000'000;
    while (api.ucp_request_check_status(r) == UCS_INPROGRESS && NowNs() < deadline) api.ucp_worker_progress(st->worker);
    api.ucp_request_free(r);
  }
}

void CloseNow() {
  if (st == nullptr) return;
  if (st->thread.joinable()) {
    st->stop.store(true, std::memory_order_release);
    api.ucp_worker_signal(st->worker);
    // The wake thread may be waiting on the sleeping word instead.
    if (int32_t* sleeping = st->sleeping.load(std::memory_order_acquire)) syscall(SYS_futex, sleeping, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
    st->thread.join();
    close(st->epollFd);
  }
  st->doorRef.Reset();
  for (auto& r : st->rkeys)
    if (r != nullptr) api.ucp_rkey_destroy(r);
  // Close endpoints (flush mode, bounded: a dead peer's close is forced).
  for (auto& e : st->eps)
    if (e != nullptr && e->ep != nullptr) CloseEndpoint(e.get());
  for (auto& m : st->memhs)
    if (m != nullptr) api.ucp_mem_unmap(st->context, m);
  for (auto& kv : st->large) {
    if (kv.second->state.load() != UCS_INPROGRESS) {
      free(kv.second->buf.data);
      delete kv.second;
    }
  }
  free(st->fill.data);
  for (Buf& b : st->spares) free(b.data);
  // Buffers still lent are freed by their ArrayBuffers' finalizers (lent tickets outlive the state).
  api.ucp_worker_destroy(st->worker);
  api.ucp_cleanup(st->context);
  delete st;
  st = nullptr;
}

}  // namespace mprun::ucx

#endif
