// The node control segment's words as native code uses them (native/coll.cc,
// native/queue.cc, the UCX progress thread's doorbell), with the semantics of transports/shm/control.ts: seq_cst
// loads and stores as JavaScript's Atomics, counters compared modulo 2^32, and
// doorbells rung as ControlSegment.ring() rings them.
#pragma once
#include "common.h"
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <vector>

namespace mprun::words {

inline int32_t Load(const int32_t* w) { return __atomic_load_n(w, __ATOMIC_SEQ_CST); }
inline void Store(int32_t* w, int32_t v) { __atomic_store_n(w, v, __ATOMIC_SEQ_CST); }
// (a - b) | 0 and (a + b) | 0 of JavaScript.
inline int32_t Sub(int32_t a, int32_t b) { return static_cast<int32_t>(static_cast<uint32_t>(a) - static_cast<uint32_t>(b)); }
inline int32_t Add(int32_t a, int32_t b) { return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b)); }
// ((a - b) | 0) >= 0: a counter at or past b.
inline bool ModGE(int32_t a, int32_t b) { return Sub(a, b) >= 0; }

inline uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// One turn of a polling loop: give the core away when ranks outnumber cores, else a pause.
inline void Relax(bool yields) {
  if (yields) sched_yield();
#if defined(__x86_64__) || defined(__i386__)
  else __builtin_ia32_pause();
#elif defined(__aarch64__)
  else asm volatile("yield");
#endif
}

// Polls `ready` for up to `budgetNs`; whether it held.
template <typename F>
bool SpinUntil(F ready, uint64_t budgetNs, bool yields) {
  if (ready()) return true;
  if (budgetNs == 0) return false;
  const uint64_t end = NowNs() + budgetNs;
  for (unsigned i = 1;; i++) {
    Relax(yields);
    if (ready()) return true;
    if ((i & 31) == 0 && NowNs() >= end) return false;
  }
}

// Where the job's abort word lies in the node control segment (control.ts H_ABORT).
constexpr int32_t kAbortWord = 4;

// A rank's sleeping word: what it sleeps for (the wake classes, control.ts WAKE_*) in the low
// byte, and above it a generation that each publication of a sleep moves on. A ringer clears the
// classes only if the word is still the one it saw (RingDoor): one preempted between moving the
// door and clearing them would otherwise clear the rank's next sleep, and every later ringer,
// reading no classes, would leave the rank asleep to the end of its slice. Only the rank (or
// its door watch) moves the generation, so a ringer's compare-exchange can fail only after the
// rank was awake again, and the rank checks its condition after it publishes.
constexpr int32_t kWakeBits = 0xff;
constexpr int32_t kSleepGeneration = 0x100;

// Publishes a sleep for `wake`, a generation on from the last; the value published.
inline int32_t ArmSleep(int32_t* sleeping, int32_t wake) {
  const uint32_t next = (static_cast<uint32_t>(Load(sleeping)) & ~static_cast<uint32_t>(kWakeBits)) + kSleepGeneration;
  const int32_t armed = static_cast<int32_t>(next | static_cast<uint32_t>(wake & kWakeBits));
  Store(sleeping, armed);
  return armed;
}

// Awake again: no classes, the generation kept (a ringer may have cleared the classes already).
inline void DisarmSleep(int32_t* sleeping, int32_t armed) { Store(sleeping, armed & ~kWakeBits); }

// Whether the rank published a sleep that ringers have not cleared yet.
inline bool Asleep(int32_t word) { return (word & kWakeBits) != 0; }

// SpinUntil, then asleep on this rank's doorbell until `ready` holds, for up to `dozeNs` in all
// (0: the spin only). The sleeper's side of ControlSegment.ring()'s protocol, as runtime/wait.ts
// block() does it: the door read, the sleep published in the sleeping word (ArmSleep), the abort
// word and `ready` checked once more, then a futex wait on the door. A ringer that saw the sleep
// moved the door first, and an abort (ControlSegment.abort: the abort word, then every door moved)
// moves it after its word: either is seen before the wait or the wait returns at once. False
// (not ready) once the budget is spent or the job aborts: the caller's TypeScript takes the
// wait over from there.
template <typename F>
bool WaitUntil(F ready, uint64_t spinNs, uint64_t dozeNs, bool yields, int32_t* words, int32_t sleepingIndex, int32_t doorIndex, int32_t wake) {
  if (SpinUntil(ready, spinNs, yields)) return true;
  if (dozeNs == 0) return false;
  int32_t* door = words + doorIndex;
  int32_t* sleeping = words + sleepingIndex;
  const uint64_t end = NowNs() + dozeNs;
  for (;;) {
    const int32_t seen = Load(door);
    const int32_t armed = ArmSleep(sleeping, wake);
    if (ready()) {
      DisarmSleep(sleeping, armed);
      return true;
    }
    const uint64_t now = NowNs();
    if (Load(words + kAbortWord) != 0 || now >= end) {
      DisarmSleep(sleeping, armed);
      return false;
    }
    const uint64_t left = end - now;
    timespec ts{static_cast<time_t>(left / 1000000000ull), static_cast<long>(left % 1000000000ull)};
    syscall(SYS_futex, door, FUTEX_WAIT, seen, &ts, nullptr, 0);
    DisarmSleep(sleeping, armed);
    // Awake: poll again for a spin, so that a stream of events costs one wake-up per spin.
    if (SpinUntil(ready, spinNs, yields)) return true;
  }
}

// ControlSegment.ring(): wakes the rank whose sleeping and door words these are
// if it sleeps for `wake`. One load unless it does; then the door moves (its
// futex wait cannot miss that) and whoever clears the classes of the sleep it
// saw pays the wake syscall. The segment is shared memory: a shared (not PRIVATE) futex.
inline void RingDoor(int32_t* sleeping, int32_t* door, int32_t wake) {
  int32_t seen = Load(sleeping);
  if ((seen & wake) == 0) return;
  __atomic_add_fetch(door, 1, __ATOMIC_SEQ_CST);
  if (__atomic_compare_exchange_n(sleeping, &seen, seen & ~kWakeBits, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) syscall(SYS_futex, door, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

// RingDoor after plain stores to memory the woken rank reads (a put's bytes, recv()'d or copied
// into its heap): the load of `sleeping` could otherwise pass those stores (x86 reorders a load
// before earlier stores), and a rank that checked the memory and then slept would sleep on.
inline void RingDoorAfterStores(int32_t* sleeping, int32_t* door, int32_t wake) {
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  RingDoor(sleeping, door, wake);
}

// The same, by the words' indices in the segment.
inline void Ring(int32_t* words, int32_t sleepingIndex, int32_t doorIndex, int32_t wake) { RingDoor(words + sleepingIndex, words + doorIndex, wake); }

// A poll budget from JavaScript, in nanoseconds: anything not positive (NaN too) polls once.
inline uint64_t BudgetNs(double ns) { return ns > 0 ? static_cast<uint64_t>(ns < 1e18 ? ns : 1e18) : 0; }

// The elements of an Int32Array (their count in *n), or nullptr for anything else.
inline int32_t* Int32s(Napi::Value v, size_t* n) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) return nullptr;
  auto a = v.As<Napi::Int32Array>();
  *n = a.ElementLength();
  return a.Data();
}

// An Int32Array of exactly n values, each in [0, limit) (word indices into an
// array of `limit` words, or offsets), copied into `out`; false for anything else.
inline bool Indices(Napi::Value v, size_t n, size_t limit, std::vector<int32_t>* out) {
  size_t count = 0;
  const int32_t* a = Int32s(v, &count);
  if (a == nullptr || count != n) return false;
  for (size_t i = 0; i < n; i++)
    if (a[i] < 0 || static_cast<size_t>(a[i]) >= limit) return false;
  out->assign(a, a + n);
  return true;
}

}  // namespace mprun::words
