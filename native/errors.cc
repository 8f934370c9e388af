#include "common.h"
#include <cerrno>
#include <cstring>

namespace mprun {

// The error class is per JS environment: worker threads (the checkpoint
// workers) load the addon too, and a reference from one isolate must never be
// used in another.
static Napi::FunctionReference* ErrorClassOf(Napi::Env env) {
  return env.GetInstanceData<Napi::FunctionReference>();
}

void SetErrorClass(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) {
    Napi::TypeError::New(info.Env(), "setErrorClass expects a constructor").ThrowAsJavaScriptException();
    return;
  }
  info.Env().SetInstanceData<Napi::FunctionReference>(new Napi::FunctionReference(Napi::Persistent(info[0].As<Napi::Function>())));
}

const char* ErrnoName(int err) {
  switch (err) {
#define E(x) case x: return #x;
    E(EPERM) E(ENOENT) E(ESRCH) E(EINTR) E(EIO) E(ENXIO) E(E2BIG) E(EBADF) E(EAGAIN) E(ENOMEM)
    E(EACCES) E(EFAULT) E(EBUSY) E(EEXIST) E(ENODEV) E(ENOTDIR) E(EISDIR) E(EINVAL) E(ENFILE)
    E(EMFILE) E(ENOTTY) E(EFBIG) E(ENOSPC) E(ESPIPE) E(EROFS) E(ERANGE) E(ENOSYS) E(ETIMEDOUT)
    E(EOVERFLOW) E(EOPNOTSUPP) E(ECONNREFUSED) E(ECONNRESET) E(EPIPE) E(EDQUOT)
    E(EBADMSG) E(EREMOTEIO) E(ECONNABORTED) E(EPROTONOSUPPORT) E(ENOTCONN)
#undef E
    default: return "EUNKNOWN";
  }
}

static Napi::Value Throw(Napi::Env env, const char* code, const std::string& message, int err, const char* syscall) {
  if (env.IsExceptionPending()) return env.Undefined();
  Napi::Object e;
  Napi::FunctionReference* errorClass = ErrorClassOf(env);
  if (errorClass != nullptr && !errorClass->IsEmpty()) {
    e = errorClass->New({Napi::String::New(env, code), Napi::String::New(env, message)});
    if (env.IsExceptionPending()) return env.Undefined();
  } else {
    e = Napi::Error::New(env, message).Value();
    e.Set("code", code);
  }
  if (err != 0) e.Set("errno", ErrnoName(err));
  if (syscall != nullptr) e.Set("syscall", syscall);
  Napi::Error(env, e).ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value ThrowErrno(Napi::Env env, const char* code, int err, const char* syscall, const std::string& detail) {
  std::string msg = std::string(syscall) + " failed: " + ErrnoName(err) + " (" + std::strerror(err) + ")";
  if (!detail.empty()) msg += ": " + detail;
  return Throw(env, code, msg, err, syscall);
}

Napi::Value ThrowCode(Napi::Env env, const char* code, const std::string& message) {
  return Throw(env, code, message, 0, nullptr);
}

size_t ElementBytes(napi_typedarray_type type) {
  switch (type) {
    case napi_int8_array: case napi_uint8_array: case napi_uint8_clamped_array: return 1;
    case napi_int16_array: case napi_uint16_array: return 2;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: return 4;
    default: return 8;
  }
}

bool TypedOf(napi_env env, napi_value v, napi_typedarray_type* type, size_t* count, uint8_t** data) {
  size_t offset;
  void* p = nullptr;
  napi_value ab;
  if (napi_get_typedarray_info(env, v, type, count, &p, &ab, &offset) != napi_ok) return false;
  *data = static_cast<uint8_t*>(p);
  return true;
}

bool BytesOf(Napi::Env env, Napi::Value v, uint8_t** data, size_t* length) {
  // The data pointers come from napi_get_*_info, which also handle views of a
  // SharedArrayBuffer (whose ArrayBuffer() accessor would give no data). One
  // call for a typed array (the hot case: every small message passes here).
  napi_typedarray_type type;
  size_t count;
  if (TypedOf(env, v, &type, &count, data)) {
    *length = count * ElementBytes(type);
    return true;
  }
  if (v.IsDataView()) {
    size_t bytes, offset;
    void* p = nullptr;
    napi_value ab;
    if (napi_get_dataview_info(env, v, &bytes, &p, &ab, &offset) != napi_ok) return false;
    *data = static_cast<uint8_t*>(p);
    *length = bytes;
    return true;
  }
  if (v.IsArrayBuffer()) {
    auto ab = v.As<Napi::ArrayBuffer>();
    *data = static_cast<uint8_t*>(ab.Data());
    *length = ab.ByteLength();
    return true;
  }
  Napi::TypeError::New(env, "expected a TypedArray, DataView or ArrayBuffer").ThrowAsJavaScriptException();
  return false;
}

bool U64Of(Napi::Env env, Napi::Value v, uint64_t* out) {
  if (v.IsBigInt()) {
    bool lossless = false;
    *out = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) {
      Napi::RangeError::New(env, "bigint does not fit in 64 bits").ThrowAsJavaScriptException();
      return false;
    }
    return true;
  }
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (d < 0 || d != static_cast<double>(static_cast<uint64_t>(d))) {
      Napi::RangeError::New(env, "expected a non-negative integer").ThrowAsJavaScriptException();
      return false;
    }
    *out = static_cast<uint64_t>(d);
    return true;
  }
  Napi::TypeError::New(env, "expected a bigint or a number").ThrowAsJavaScriptException();
  return false;
}

}  // namespace mprun
