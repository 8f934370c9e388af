// The one compute kernel of the addon: element-wise reduction of typed arrays,
// dst[i] = dst[i] <op> src[i]. Measured on the reference machine, a V8 loop
// sums float64 at about 1.7 ns per element; this loop, which the compiler
// vectorizes, runs at memory speed. Semantics match runtime/coll/ops.ts:
// integers wrap (computed unsigned, so no signed overflow), Uint8Clamped
// clamps, min/max let a NaN win (associative, whatever the grouping).
#include "common.h"
#include <cstdint>
#include <type_traits>

namespace mprun {
namespace {

enum Op { SUM = 1, PROD, MIN, MAX, BAND, BOR, BXOR, LAND, LOR };

// Integers are added and multiplied as unsigned (wrap-around, no UB); floats as they are.
// Types narrower than int as unsigned int: uint16_t * uint16_t would promote to (signed)
// int and overflow.
template <typename T, bool = std::is_integral_v<T>>
struct Arith { using type = T; };
template <typename T>
struct Arith<T, true> { using type = std::conditional_t<(sizeof(T) < sizeof(unsigned)), unsigned, std::make_unsigned_t<T>>; };
template <typename T>
using Wide = typename Arith<T>::type;

template <typename T, Op op>
void Apply(T* __restrict d, const T* __restrict s, size_t n) {
  using U = Wide<T>;
  for (size_t i = 0; i < n; i++) {
    if constexpr (op == SUM) d[i] = static_cast<T>(static_cast<U>(d[i]) + static_cast<U>(s[i]));
    else if constexpr (op == PROD) d[i] = static_cast<T>(static_cast<U>(d[i]) * static_cast<U>(s[i]));
    // A NaN wins (s != s only for floats): so min and max are associative, and a fold across
    // nodes in another grouping gives what one in rank order gives (1 min NaN was 1, NaN min 1 NaN).
    else if constexpr (op == MIN) d[i] = (s[i] < d[i] || s[i] != s[i]) ? s[i] : d[i];
    else if constexpr (op == MAX) d[i] = (s[i] > d[i] || s[i] != s[i]) ? s[i] : d[i];
    else if constexpr (op == LAND) d[i] = (d[i] != 0 && s[i] != 0) ? 1 : 0;
    else if constexpr (op == LOR) d[i] = (d[i] != 0 || s[i] != 0) ? 1 : 0;
    else if constexpr (std::is_integral_v<T>) {
      if constexpr (op == BAND) d[i] = d[i] & s[i];
      else if constexpr (op == BOR) d[i] = d[i] | s[i];
      else if constexpr (op == BXOR) d[i] = d[i] ^ s[i];
    }
  }
}

// Uint8ClampedArray: sums and products saturate at 255.
template <Op op>
void ApplyClamped(uint8_t* __restrict d, const uint8_t* __restrict s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if constexpr (op == SUM) {
      unsigned v = unsigned(d[i]) + s[i];
      d[i] = v > 255 ? 255 : uint8_t(v);
    } else if constexpr (op == PROD) {
      unsigned v = unsigned(d[i]) * s[i];
      d[i] = v > 255 ? 255 : uint8_t(v);
    }
  }
}

template <typename T>
bool Dispatch(int op, void* d, const void* s, size_t n) {
  auto* dt = static_cast<T*>(d);
  auto* st = static_cast<const T*>(s);
  switch (op) {
    case SUM: Apply<T, SUM>(dt, st, n); return true;
    case PROD: Apply<T, PROD>(dt, st, n); return true;
    case MIN: Apply<T, MIN>(dt, st, n); return true;
    case MAX: Apply<T, MAX>(dt, st, n); return true;
    case LAND: Apply<T, LAND>(dt, st, n); return true;
    case LOR: Apply<T, LOR>(dt, st, n); return true;
    case BAND: case BOR: case BXOR:
      if constexpr (!std::is_integral_v<T>) return false;
      else {
        if (op == BAND) Apply<T, BAND>(dt, st, n);
        else if (op == BOR) Apply<T, BOR>(dt, st, n);
        else Apply<T, BXOR>(dt, st, n);
        return true;
      }
    default: return false;
  }
}

}  // namespace

bool ReduceInto(napi_typedarray_type type, int op, void* d, const void* s, size_t n) {
  switch (type) {
    case napi_int8_array: return Dispatch<int8_t>(op, d, s, n);
    case napi_uint8_array: return Dispatch<uint8_t>(op, d, s, n);
    case napi_uint8_clamped_array:
      if (op == SUM) { ApplyClamped<SUM>(static_cast<uint8_t*>(d), static_cast<const uint8_t*>(s), n); return true; }
      if (op == PROD) { ApplyClamped<PROD>(static_cast<uint8_t*>(d), static_cast<const uint8_t*>(s), n); return true; }
      return Dispatch<uint8_t>(op, d, s, n);
    case napi_int16_array: return Dispatch<int16_t>(op, d, s, n);
    case napi_uint16_array: return Dispatch<uint16_t>(op, d, s, n);
    case napi_int32_array: return Dispatch<int32_t>(op, d, s, n);
    case napi_uint32_array: return Dispatch<uint32_t>(op, d, s, n);
    case napi_float32_array: return Dispatch<float>(op, d, s, n);
    case napi_float64_array: return Dispatch<double>(op, d, s, n);
    case napi_bigint64_array: return Dispatch<int64_t>(op, d, s, n);
    case napi_biguint64_array: return Dispatch<uint64_t>(op, d, s, n);
    default: return false;
  }
}

namespace {

// reduce(dst, dstIndex, src, srcIndex, count, opCode): both arrays of one type.
Napi::Value Reduce(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (!info[0].IsTypedArray() || !info[2].IsTypedArray()) return ThrowCode(env, "ERR_MPRUN_ARG", "reduce expects two typed arrays");
  auto dst = info[0].As<Napi::TypedArray>();
  auto src = info[2].As<Napi::TypedArray>();
  if (dst.TypedArrayType() != src.TypedArrayType()) return ThrowCode(env, "ERR_MPRUN_ARG", "reduce: arrays of different types");
  size_t di = info[1].As<Napi::Number>().Int64Value();
  size_t si = info[3].As<Napi::Number>().Int64Value();
  size_t n = info[4].As<Napi::Number>().Int64Value();
  int op = info[5].As<Napi::Number>().Int32Value();
  if (di + n > dst.ElementLength() || si + n > src.ElementLength()) {
    Napi::RangeError::New(env, "reduce: range outside an array").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  size_t bpe = dst.ByteLength() / (dst.ElementLength() == 0 ? 1 : dst.ElementLength());
  uint8_t* d = static_cast<uint8_t*>(dst.ArrayBuffer().Data()) + dst.ByteOffset() + di * bpe;
  const uint8_t* s = static_cast<const uint8_t*>(src.ArrayBuffer().Data()) + src.ByteOffset() + si * bpe;
  if (!ReduceInto(dst.TypedArrayType(), op, d, s, n)) return ThrowCode(env, "ERR_MPRUN_ARG", "reduce: operator not defined on this type");
  return env.Undefined();
}

}  // namespace

void InitReduce(Napi::Env env, Napi::Object exports) {
  exports.Set("reduce", Napi::Function::New(env, Reduce));
}

}  // namespace mprun
