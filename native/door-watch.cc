// A participant's doorbell watched by a thread, for a process whose JavaScript
// thread must not block: the node agent, which writes into its ranks' queues
// as their gateway (transports/dsm/relay.ts). A rank finding a queue full sleeps
// on its door futex until the consumer makes room and rings it; the agent's
// event loop cannot sleep on a futex, and retried every millisecond instead:
// a 1 MiB message needs about five refills of a 256 KiB queue, and a message
// across nodes over --net tcp moved at 0.4 GB/s. Here a thread sleeps on the
// door for it and calls back into JavaScript when the door moves.
//
// Protocol, as a rank's own wait (runtime/wait.ts): arm() reads the door, then
// publishes what the participant sleeps for in its `sleeping` word (seq-cst);
// the caller then checks its condition once more. A ringer that saw the
// publication moves the door (words::RingDoor), so the thread, waiting for the
// door to leave the value read before it, does not miss it; a ringer that did
// not wrote its change before the caller's check. Each arm after a callback is
// a new generation of the word (words::ArmSleep), so a ringer preempted after
// it moved the door for an earlier one cannot clear this one. The thread still
// calls back after its slice without a ring, and the caller looks again (and
// arms again if need be): a door moved without a wake (an abort's) ends there.
#include "common.h"
#include "words.h"
#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace mprun {
namespace {

struct Watch {
  int32_t* sleeping = nullptr;
  int32_t* door = nullptr;
  int32_t wake = 0;
  std::mutex lock;  // armed, seen, stop
  std::condition_variable changed;
  bool armed = false;
  int32_t seen = 0;
  bool stop = false;
  long sliceMs = 10;  // longest the thread waits for a ring before it calls back anyway (see the protocol above)
  Napi::ThreadSafeFunction ring;  // the JavaScript callback
  Napi::ObjectReference words;    // keeps the segment's array alive while the thread reads it
  std::thread thread;
};

// By handle; null once unwatched (JavaScript's thread only). Never destroyed: a process
// that exits with a watch still running must not run ~thread on it (std::terminate).
auto& watches = *new std::vector<std::unique_ptr<Watch>>();

void Run(Watch* w) {
  for (;;) {
    int32_t seen;
    {
      std::unique_lock<std::mutex> g(w->lock);
      w->changed.wait(g, [w] { return w->armed || w->stop; });
      if (w->stop) return;
      seen = w->seen;
    }
    // Until the door moves or a slice passes (a ring lost as the protocol says).
    timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += w->sliceMs / 1000;
    end.tv_nsec += (w->sliceMs % 1000) * 1000 * 1000;
    if (end.tv_nsec >= 1000 * 1000 * 1000) {
      end.tv_sec++;
      end.tv_nsec -= 1000 * 1000 * 1000;
    }
    while (words::Load(w->door) == seen) {
      // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline: spurious wake-ups do not extend it.
      long r = syscall(SYS_futex, w->door, FUTEX_WAIT_BITSET, seen, &end, nullptr, FUTEX_BITSET_MATCH_ANY);
      std::lock_guard<std::mutex> g(w->lock);
      if (w->stop) return;
      if (r != 0 && errno == ETIMEDOUT) break;
    }
    {
      std::lock_guard<std::mutex> g(w->lock);
      if (w->stop) return;
      w->armed = false;
    }
    w->ring.NonBlockingCall();
  }
}

Watch* WatchOf(const Napi::CallbackInfo& info) {
  uint32_t h = info[0].As<Napi::Number>().Uint32Value();
  if (h >= watches.size() || watches[h] == nullptr) {
    ThrowCode(info.Env(), "ERR_MPRUN_ARG", "no such door watch (unwatched already?)");
    return nullptr;
  }
  return watches[h].get();
}

// doorWatch(words: Int32Array, sleepingIndex, doorIndex, wake, onRing, sliceMs = 10) -> handle.
// onRing runs on the JavaScript thread, once the door moved after a doorArm (or sliceMs passed;
// arms while armed count as one); the watch holds no event loop open.
Napi::Value DoorWatch(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array || !info[4].IsFunction()) {
    return ThrowCode(env, "ERR_MPRUN_ARG", "doorWatch(words: Int32Array, sleepingIndex, doorIndex, wake, onRing)");
  }
  auto words = info[0].As<Napi::Int32Array>();
  uint32_t sleeping = info[1].As<Napi::Number>().Uint32Value();
  uint32_t door = info[2].As<Napi::Number>().Uint32Value();
  if (sleeping >= words.ElementLength() || door >= words.ElementLength()) return ThrowCode(env, "ERR_MPRUN_ARG", "doorWatch: a word index outside the array");
  auto w = std::make_unique<Watch>();
  w->sleeping = words.Data() + sleeping;
  w->door = words.Data() + door;
  w->wake = info[3].As<Napi::Number>().Int32Value();
  if (info.Length() > 5 && info[5].IsNumber()) w->sliceMs = std::max<long>(1, info[5].As<Napi::Number>().Int64Value());
  w->words = Napi::Persistent(static_cast<Napi::Object>(words));
  w->ring = Napi::ThreadSafeFunction::New(env, info[4].As<Napi::Function>(), "mprun-door-watch", 0, 1);
  w->ring.Unref(env);
  w->thread = std::thread(Run, w.get());
  watches.push_back(std::move(w));
  return Napi::Number::New(env, static_cast<double>(watches.size() - 1));
}

// doorArm(handle): as a rank before it sleeps; onRing follows once the door moves. The
// caller checks its condition once more after this (see the protocol above).
Napi::Value DoorArm(const Napi::CallbackInfo& info) {
  Watch* w = WatchOf(info);
  if (w == nullptr) return info.Env().Undefined();
  {
    std::lock_guard<std::mutex> g(w->lock);
    if (!w->armed) {
      w->seen = words::Load(w->door);
      w->armed = true;
      // Classes an earlier arm left (no ringer came) are kept: only a spurious wake-up.
      words::ArmSleep(w->sleeping, words::Load(w->sleeping) | w->wake);
    } else {
      words::Store(w->sleeping, words::Load(w->sleeping) | w->wake);
    }
  }
  w->changed.notify_one();
  return info.Env().Undefined();
}

// doorUnwatch(handle): ends the thread. A call it queued just before may still come (DoorWatch
// in transports/shm/door.ts drops it).
Napi::Value DoorUnwatch(const Napi::CallbackInfo& info) {
  Watch* w = WatchOf(info);
  if (w == nullptr) return info.Env().Undefined();
  {
    std::lock_guard<std::mutex> g(w->lock);
    w->stop = true;
  }
  w->changed.notify_one();
  syscall(SYS_futex, w->door, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
  w->thread.join();
  w->ring.Release();
  w->words.Reset();
  watches[info[0].As<Napi::Number>().Uint32Value()].reset();
  return info.Env().Undefined();
}

}  // namespace

void InitDoorWatch(Napi::Env env, Napi::Object exports) {
  exports.Set("doorWatch", Napi::Function::New(env, DoorWatch));
  exports.Set("doorArm", Napi::Function::New(env, DoorArm));
  exports.Set("doorUnwatch", Napi::Function::New(env, DoorUnwatch));
}

}  // namespace mprun
