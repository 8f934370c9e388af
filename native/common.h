// Shared declarations of the addon. Native code is here where measurement or
// the platform says so (system calls, vector kernels, the rpmem lane threads,
// the dlopened libpmem/PMIx/UCX bindings; each file says why in its header);
// every policy (which backend, what to retry, what to tell the user) lives in TypeScript.
#pragma once
#include <napi.h>
#include <cstdint>
#include <string>

namespace mprun {

// Throws the JS error class registered by setErrorClass() (MprunError), with
// `code`, and `errno`/`syscall` when a system call failed. Returns undefined so
// that callers can `return ThrowErrno(...)`.
Napi::Value ThrowErrno(Napi::Env env, const char* code, int err, const char* syscall, const std::string& detail = "");
Napi::Value ThrowCode(Napi::Env env, const char* code, const std::string& message);
const char* ErrnoName(int err);
void SetErrorClass(const Napi::CallbackInfo& info);

// A function bound to `data` (Node-API function data, read with info.Data()) that holds
// `owner`, the External whose finalizer frees `data`: the struct lives as long as any
// function bound to it does. The template form calls `cb` with no callback record between.
template <Napi::Function::Callback cb>
Napi::Function BoundFunction(Napi::Env env, const char* name, void* data, Napi::Value owner) {
  Napi::Function f = Napi::Function::New<cb>(env, name, data);
  // Read-only and not configurable: no caller can drop it while it keeps the function.
  f.DefineProperty(Napi::PropertyDescriptor::Value("handle", owner, napi_default));
  return f;
}

// Pointer and length of the bytes behind a TypedArray, DataView or ArrayBuffer.
// Returns false (with a pending TypeError) for anything else.
bool BytesOf(Napi::Env env, Napi::Value v, uint8_t** data, size_t* length);
// One napi_get_typedarray_info: a typed array's type, elements and the address
// of its first (false, with no exception pending, for anything else).
bool TypedOf(napi_env env, napi_value v, napi_typedarray_type* type, size_t* count, uint8_t** data);
size_t ElementBytes(napi_typedarray_type type);
// A JS bigint or number as an unsigned 64-bit value.
bool U64Of(Napi::Env env, Napi::Value v, uint64_t* out);

// d[i] = d[i] <op> s[i] for i < n, elements of the typed array type `type`
// (op: runtime/coll/ops.ts's codes); false when the operator is not defined on it.
bool ReduceInto(napi_typedarray_type type, int op, void* d, const void* s, size_t n);

void InitShm(Napi::Env env, Napi::Object exports);
void InitColl(Napi::Env env, Napi::Object exports);
void InitQueue(Napi::Env env, Napi::Object exports);
void InitCma(Napi::Env env, Napi::Object exports);
void InitFutex(Napi::Env env, Napi::Object exports);
void InitDoorWatch(Napi::Env env, Napi::Object exports);
void InitSocketWrite(Napi::Env env, Napi::Object exports);
void InitXpmem(Napi::Env env, Napi::Object exports);
void InitProcess(Napi::Env env, Napi::Object exports);
void InitReduce(Napi::Env env, Napi::Object exports);
void InitPmem(Napi::Env env, Napi::Object exports);
void InitLane(Napi::Env env, Napi::Object exports);
void InitUcx(Napi::Env env, Napi::Object exports);
void InitPmix(Napi::Env env, Napi::Object exports);
void InitAmo(Napi::Env env, Napi::Object exports);

// Wraps [addr, addr+length) as an external ArrayBuffer. `unmap` is called once,
// either from release() or from the GC finalizer, whichever comes first.
using UnmapFn = void (*)(void* addr, size_t length, void* hint);
Napi::ArrayBuffer WrapMapping(Napi::Env env, void* addr, size_t length, UnmapFn unmap, void* hint);
// Detaches the ArrayBuffer (its views become length 0) and unmaps it now.
bool ReleaseMapping(Napi::Env env, Napi::Value buffer);

}  // namespace mprun
