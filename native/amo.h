// Shared declarations of the shared-variable atomics (native/amo-server.cc,
// the agent's serving thread; native/amo-client.cc, a rank's requests). The
// wire is described in amo-server.cc.
#pragma once
#include "common.h"
#include "words.h"
#include <cstddef>
#include <cstdint>
#include <sched.h>
#include <cstring>
#include <sys/epoll.h>

namespace mprun::amo {

constexpr uint32_t kHelloMagic = 0x4d41504d;  // 'MPAM'
constexpr uint32_t kMaxSecret = 1024;
constexpr size_t kRequest = 32;
constexpr size_t kReply = 16;
enum Dtype : uint8_t { kI8 = 1, kU8 = 2, kU8C = 3, kI16 = 4, kU16 = 5, kI32 = 6, kU32 = 7, kF32 = 8, kF64 = 9, kI64 = 10, kU64 = 11 };
// Reply statuses; transports/dsm/amo.ts says them in words.
// kNotServed: a rank's heap this thread has not been given (yet): ask the agent on the link.
enum Status : uint32_t { kOk = 0, kNoVariable = 1, kOutside = 2, kNotHomed = 3, kBadOperation = 4, kNotServed = 5 };
// A request's id with this bit: world rank (id & ~kHeapTarget)'s symmetric heap, not a variable.
constexpr uint32_t kHeapTarget = 0x80000000u;

// Request operations: transports/endpoint.ts's AtomicOp, and kGet (a heap's bytes).
// kPut: `length` bytes follow the request, no reply; kFlush: replied once every request
// before it was served, with the first failure of a put since the last flush (puts have
// no reply of their own).
enum Op : uint8_t { kFetchAdd = 1, kCompareSwap = 2, kSwap = 3, kFetch = 4, kSet = 5, kGet = 16, kPut = 17, kFlush = 18 };

// A float64 operand or old value as it is on the wire.
inline double OperandNumber(const uint8_t* p) {
  double d;
  memcpy(&d, p, 8);
  return d;
}

// The bytes of an element of type `dtype` (0: no atomics on that type).
size_t ElementSize(uint8_t dtype);
// Applies atomic `op` to the element of type `dtype` at `at` (operands a and b
// as on the wire); writes the old value's 8 wire bytes to `out`. False: bad op.
bool Apply(uint8_t op, uint8_t dtype, uint8_t* at, const uint8_t* a, const uint8_t* b, uint8_t* out);

// Both ends poll before they sleep, as MPI's TCP transports do: on this kind of link a
// round trip is a few microseconds, and waking a sleeping thread on each side cost more
// than the rest of it (get across two namespace nodes 70 us with both sleeping). The
// serving thread's epoll_wait polls (timeout 0) until spinNs after its last event
// (*lastNs), then blocks; a rank's recv() polls (MSG_DONTWAIT) for its spin budget.
inline int WaitEvents(int epfd, epoll_event* evs, int n, uint64_t spinNs, uint64_t* lastNs) {
  for (;;) {
    const bool spin = spinNs > 0 && words::NowNs() - *lastNs < spinNs;
    int k = epoll_wait(epfd, evs, n, spin ? 0 : -1);
    if (k != 0 || !spin) {
      if (k > 0) *lastNs = words::NowNs();
      return k;
    }
    sched_yield();
  }
}

// connect, request, reply and close on `amo`.
void InitClient(Napi::Env env, Napi::Object amo);

}  // namespace mprun::amo
