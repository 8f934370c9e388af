// The atomic operations of native/amo-server.cc on one element, with the
// semantics of transports/atomics.ts (JavaScript's Atomics, and a
// compare-exchange loop for floats), so that the agent's thread, its JavaScript
// and the node's ranks stay atomic with respect to each other.
#include "amo.h"
#include <cmath>
#include <cstring>

namespace mprun::amo {
namespace {

bool IsBig(uint8_t dtype) { return dtype == kI64 || dtype == kU64; }

// ECMAScript's ToInt32/ToUint32 and kin, as Atomics applies them to a number
// operand: truncate, then modulo 2^64 (the caller keeps the low bits it needs).
uint64_t ModularBits(double d) {
  if (!std::isfinite(d)) return 0;
  double t = std::trunc(d);
  // Within int64 the conversion is exact (2^64 - 3 is not a double: -3 must not go through it).
  if (t > -9223372036854775808.0 && t < 9223372036854775808.0) return uint64_t(int64_t(t));
  // Beyond, t is a multiple of 2^11 or more, so the remainder and its sum with 2^64 are exact.
  constexpr double kTwo64 = 18446744073709551616.0;
  double m = std::fmod(t, kTwo64);
  if (m < 0) m += kTwo64;
  if (m >= kTwo64) m = 0;
  return uint64_t(m);
}

uint64_t OperandBits(uint8_t dtype, const uint8_t* p) {
  uint64_t raw;
  memcpy(&raw, p, 8);
  if (IsBig(dtype)) return raw;
  double d;
  memcpy(&d, &raw, 8);
  return ModularBits(d);
}

template <typename T>
T Integer(uint8_t op, T* at, T a, T b, bool* ok) {
  switch (op) {
    case kFetchAdd: return __atomic_fetch_add(at, a, __ATOMIC_SEQ_CST);
    case kCompareSwap: {
      T expected = a;
      __atomic_compare_exchange_n(at, &expected, b, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
      return expected;  // the old value whether or not it matched
    }
    case kSwap:
    case kSet: return __atomic_exchange_n(at, a, __ATOMIC_SEQ_CST);
    case kFetch: return __atomic_load_n(at, __ATOMIC_SEQ_CST);
    default: *ok = false; return 0;
  }
}

// Floats: a compare-exchange loop on the bits, as transports/atomics.ts's
// floatAtomic (the sum in double precision, then rounded to the element type;
// COMPARE_SWAP compares values, so -0 equals 0 and NaN equals nothing).
template <typename F, typename Bits>
double Float(uint8_t op, Bits* at, double a, double b, bool* ok) {
  for (;;) {
    Bits seen = __atomic_load_n(at, __ATOMIC_SEQ_CST);
    F old;
    memcpy(&old, &seen, sizeof(F));
    F next;
    switch (op) {
      case kFetch: return double(old);
      case kFetchAdd: next = F(double(old) + a); break;
      case kSwap:
      case kSet: next = F(a); break;
      case kCompareSwap:
        if (!(double(old) == a)) return double(old);
        next = F(b);
        break;
      default: *ok = false; return 0;
    }
    Bits nextBits;
    memcpy(&nextBits, &next, sizeof(F));
    if (__atomic_compare_exchange_n(at, &seen, nextBits, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) return double(old);
  }
}

}  // namespace

// Applies the operation at `at`; writes the old value's 8 wire bytes to `out`.
bool Apply(uint8_t op, uint8_t dtype, uint8_t* at, const uint8_t* a, const uint8_t* b, uint8_t* out) {
  bool ok = true;
  auto number = [&](double v) { memcpy(out, &v, 8); };
  switch (dtype) {
    case kI8: number(Integer<int8_t>(op, reinterpret_cast<int8_t*>(at), int8_t(OperandBits(dtype, a)), int8_t(OperandBits(dtype, b)), &ok)); break;
    case kU8: number(Integer<uint8_t>(op, at, uint8_t(OperandBits(dtype, a)), uint8_t(OperandBits(dtype, b)), &ok)); break;
    case kI16: number(Integer<int16_t>(op, reinterpret_cast<int16_t*>(at), int16_t(OperandBits(dtype, a)), int16_t(OperandBits(dtype, b)), &ok)); break;
    case kU16: number(Integer<uint16_t>(op, reinterpret_cast<uint16_t*>(at), uint16_t(OperandBits(dtype, a)), uint16_t(OperandBits(dtype, b)), &ok)); break;
    case kI32: number(Integer<int32_t>(op, reinterpret_cast<int32_t*>(at), int32_t(OperandBits(dtype, a)), int32_t(OperandBits(dtype, b)), &ok)); break;
    case kU32: number(Integer<uint32_t>(op, reinterpret_cast<uint32_t*>(at), uint32_t(OperandBits(dtype, a)), uint32_t(OperandBits(dtype, b)), &ok)); break;
    case kF32: number(Float<float, uint32_t>(op, reinterpret_cast<uint32_t*>(at), OperandNumber(a), OperandNumber(b), &ok)); break;
    case kF64: number(Float<double, uint64_t>(op, reinterpret_cast<uint64_t*>(at), OperandNumber(a), OperandNumber(b), &ok)); break;
    case kI64:
    case kU64: {
      uint64_t old = Integer<uint64_t>(op, reinterpret_cast<uint64_t*>(at), OperandBits(dtype, a), OperandBits(dtype, b), &ok);
      memcpy(out, &old, 8);
      break;
    }
    default: return false;
  }
  return ok;
}

size_t ElementSize(uint8_t dtype) {
  switch (dtype) {
    case kI8: case kU8: return 1;
    case kI16: case kU16: return 2;
    case kI32: case kU32: case kF32: return 4;
    case kF64: case kI64: case kU64: return 8;
    default: return 0;
  }
}

}  // namespace mprun::amo
