// Shared declarations of the UCX binding (native/ucx.cc, ucx-lib.cc, ucx-ops.cc);
// why UCX is native is said in ucx-lib.cc's header.
#pragma once
#include "common.h"

#if __has_include(<ucp/api/ucp.h>)
#define MPRUN_HAVE_UCX_HEADERS 1
#include <ucp/api/ucp.h>
#else
#define MPRUN_HAVE_UCX_HEADERS 0
#endif

#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#if MPRUN_HAVE_UCX_HEADERS

namespace mprun::ucx {

constexpr const char* kCode = "ERR_MPRUN_UCX";
// Operation slots JavaScript may have in flight at once (transports/ucx/slots.ts mirrors it).
constexpr uint32_t kSlots = 4096;
// Shared control area: status[kSlots] int32 | result[kSlots] int64 | ring[kSlots] int32 | ctl[16] int32.
constexpr uint32_t kCtlRingTail = 0;   // completions appended so far (the ring index is this mod kSlots)
constexpr uint32_t kCtlInbox = 1;      // message records waiting for takeMessages()
constexpr uint32_t kCtlFailedEps = 2;  // endpoints that saw an error (bumped on each)
constexpr uint32_t kCtlWords = 16;
constexpr unsigned kAmId = 0;     // messages (ucx-inbox.cc)
constexpr unsigned kAmPutId = 1;  // a put as an active message (ucx-put.cc)
constexpr unsigned kAmAckId = 2;  // its acknowledgement
// The JS thread counts as polling this long after a progress(). At 50 us, a rank
// descheduled for a moment on the 2 shared cores let the thread take over (and
// then wake for the next arrivals) thousands of times a second: two-sided latency
// across the namespace link 32.9 us one way against 20.4 at 500 us and 23.3
// without the thread (medians of 6 alternating runs; 2 ms: 24.2).
constexpr int64_t kIdleNs = 500'000;
constexpr long kNapNs = 200'000;             // how long the thread first naps while it does
constexpr long kMaxNapNs = 6'400'000;        // its naps double up to this while the JS thread keeps polling

// Inbox record: u32 length, u32 source, i32 tag, u32 dtype, u32 large id (0: inline), u32 pad, payload padded to 8.
constexpr size_t kRecordHeader = 24;

// libucp's functions, resolved with dlsym (typed from ucp.h's declarations).
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

#undef UCP_FN

extern Api api;
// Opens libucp and resolves every function once; afterwards api.error says why not.
bool Load();
const char* StatusString(ucs_status_t s);

struct Ep {
  ucp_ep_h ep = nullptr;
  std::string peer;
  uint32_t id = 0;             // its index in State::eps (a put's acknowledgement names it)
  std::atomic<int> status{0};  // the first error the endpoint saw (ucs_status_t), 0 while healthy
  // Puts as our own active messages (ucx-put.cc): issued, acknowledged by the target,
  // the first refusal not yet reported, and the flushes waiting for acknowledgements
  // (the count each waits for, its slot), in the order they were issued.
  uint64_t putsSent = 0;
  uint64_t putsAcked = 0;
  ucs_status_t putRefused = UCS_OK;
  std::vector<std::pair<uint64_t, uint32_t>> putFlushes;
};

// Memory registered with mem_map: where a peer's active-message put may write.
struct Region {
  uint64_t base = 0;
  uint64_t length = 0;
};

// Receive memory, recycled. The AM handler appends eager records to one batch
// buffer and receives a rendezvous message into a buffer of its own;
// JavaScript gets each as an ArrayBuffer and gives it back (giveBack) once
// delivered, since a MessageSink's payload is valid only during its call. The
// buffers go back to a few spares, already faulted in: fresh memory for every
// batch cost a page fault per 4 KiB and the kernel's zeroing of it, over a
// third of a receiving rank's CPU at 64 KiB messages.
struct Buf {
  uint8_t* data = nullptr;
  size_t size = 0;  // bytes in use
  size_t cap = 0;
};

// A buffer lent to JavaScript as an external ArrayBuffer: given back (and
// reused), or freed by the ArrayBuffer's finalizer when never given back.
struct Lent {
  Buf buf;
  bool back = false;
};

// An arriving message too large for UCX's eager protocol: received with
// ucp_am_recv_data_nbx into its own buffer, handed to JS without a copy.
struct Large {
  Buf buf;
  std::atomic<int> state{UCS_INPROGRESS};
};

struct State {
  ucp_context_h context = nullptr;
  ucp_worker_h worker = nullptr;
  int efd = -1;
  bool twoThreads = false;  // the worker is not SINGLE-threaded: the progress thread may call it (under WorkerLock)
  std::vector<std::unique_ptr<Ep>> eps;  // index = ep id (ids are never reused)
  std::vector<ucp_rkey_h> rkeys;         // index = rkey id
  std::vector<ucp_mem_h> memhs;          // index = memh id
  std::vector<Region> regions;           // index = memh id (length 0 once unmapped)
  // Inbox: records appended by the AM handler, taken by JavaScript in one batch.
  std::mutex inboxLock;  // fill, inboxRecords, large, spares
  Buf fill;
  uint32_t inboxRecords = 0;
  std::vector<Buf> spares;
  std::unordered_map<uint8_t*, Lent*> lent;  // by data address; JavaScript's thread only
  std::unordered_map<uint32_t, Large*> large;
  uint32_t nextLarge = 1;
  // The native thread: the progress thread, or (progress thread off) the wake thread.
  std::thread thread;
  bool progressing = false;  // the thread progresses the worker (SERIALIZED mode), not only watches it
  int64_t spinNs = 0;        // how long the progress thread polls after serving before it sleeps (open's spinUs)
  bool failArm = false;      // MPRUN_UCX_FAIL_ARM (tests): the progress thread's ucp_worker_arm reports an I/O error
  std::mutex workerLock;     // WorkerLock below
  std::atomic<uint32_t> arms{0};  // arm() calls that armed the worker (the wake thread waits for the next)
  std::atomic<bool> stop{false};
  std::atomic<int64_t> lastMainProgress{0};
  std::atomic<int> mainWaiting{0};  // the rank's threads waiting for workerLock (WorkerLock)
  int epollFd = -1;
  // Bumped by every completion, arriving message and endpoint failure (whichever
  // thread's progress ran it): the progress thread compares it around its progress.
  std::atomic<uint32_t> events{0};
  // The rank's doorbell in the node's control segment (doorbell(); null until then):
  // the progress thread rings it as ControlSegment.ring does, or a rank asleep on
  // its futex would not see what the thread took in until its slice ended.
  std::atomic<int32_t*> door{nullptr};
  std::atomic<int32_t*> sleeping{nullptr};
  int32_t wakeMessage = 0, wakeHeap = 0;
  Napi::ObjectReference doorRef;  // keeps the control segment's array alive
};

extern State* st;

// Held around every call into the worker while the progress thread runs: the
// worker is SERIALIZED, so UCX takes no lock of its own. JavaScript's thread
// waits for it (the progress thread holds it only while the rank does not poll);
// the progress thread only tries it. With UCX's MULTI-mode mutex, the thread,
// once inside a call, waited on the lock while the rank polled, and each of the
// rank's unlocks then paid a futex wake-up (strace showed one per call). With
// this lock and the thread's doubling naps (ucx-lib.cc), two-sided latency
// across the namespace link went from 38 us one way to 23-28 us (19 us without
// the thread), medians of 5 alternating runs.
class WorkerLock {
 public:
  WorkerLock() : held_(st != nullptr && st->progressing) {
    // Counted while it waits: the progress thread then naps instead of taking the lock again (a
    // mutex is not handed over, and a yield does nothing for a rank on the other core).
    if (held_ && !st->workerLock.try_lock()) {
      st->mainWaiting.fetch_add(1, std::memory_order_relaxed);
      st->workerLock.lock();
      st->mainWaiting.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  ~WorkerLock() {
    if (held_) st->workerLock.unlock();
  }
  WorkerLock(const WorkerLock&) = delete;
  WorkerLock& operator=(const WorkerLock&) = delete;

 private:
  bool held_;
};

// Receive buffers (ucx-inbox.cc); TakeSpare and PutSpare with inboxLock held.
Buf TakeSpare(size_t minCap);
void PutSpare(Buf b);
Napi::Value Lend(Napi::Env env, Buf b);  // an external ArrayBuffer, or undefined with an exception pending
extern std::string openedContextInfo;

// The control area shared with JavaScript (see ucx-lib.cc).
extern uint8_t* control;
extern int32_t* statusOf;
extern int64_t* resultOf;
extern int64_t* operandOf;
extern uint32_t* headerOf;
extern int32_t* ring;
extern int32_t* ctl;
inline void StoreRelease(int32_t* p, int32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
size_t ControlBytes();
void EnsureControl();
int64_t NowNs();

void SendCallback(void* request, ucs_status_t status, void* user);
void WaitCallback(void* request, ucs_status_t status, void* user);
void EpErrorHandler(void* arg, ucp_ep_h ep, ucs_status_t status);
ucs_status_t AmHandler(void* arg, const void* header, size_t headerLength, void* data, size_t length, const ucp_am_recv_param_t* param);
void ProgressThread();
void WakeThread();
// Wakes the rank if it sleeps waiting for any of the classes in `wake` (ControlSegment.ring).
void RingRank(int32_t wake);
void CloseEndpoint(Ep* e);
void CloseNow();
std::string Capture(void (*print)(void*, FILE*), void* obj);

// Helpers of the bindings.
Napi::Value Fail(Napi::Env env, const std::string& what, ucs_status_t s);
bool Opened(Napi::Env env);
Ep* EpOf(Napi::Env env, Napi::Value v);
ucp_rkey_h RkeyOf(Napi::Env env, Napi::Value v);
bool SlotOf(Napi::Env env, Napi::Value v, uint32_t* slot);
int64_t OperandOf(Napi::Value v);
// "op of N bytes to rank R" (bytes kNoBytes: no size; e null: no peer), for errors.
constexpr size_t kNoBytes = SIZE_MAX;
std::string Describe(const char* op, size_t bytes, const Ep* e);
Napi::Value Issued(Napi::Env env, ucs_status_ptr_t r, uint32_t slot, const char* op, size_t bytes, Ep* e);
void PrepareSlot(ucp_request_param_t& p, uint32_t slot);
ucs_status_t WaitRequest(ucs_status_ptr_t r, int32_t* done);

// The operations' bindings (ucx-ops.cc).
void InitOps(Napi::Env env, Napi::Object u);

// Puts as active messages (ucx-put.cc): the handlers, set on a new worker; the
// flushes of a failed endpoint completed with its error; the bindings.
ucs_status_t SetPutHandlers(ucp_worker_h worker);
void FailPutFlushes(Ep* e, ucs_status_t status);
void InitPuts(Napi::Env env, Napi::Object u);
void Complete(uint32_t slot, ucs_status_t status);

}  // namespace mprun::ucx

#endif
