// Entry point of the native addon. See native/index.ts for the typed loader.
#include "common.h"

namespace mprun {

static Napi::Value SetErrorClassJs(const Napi::CallbackInfo& info) {
  SetErrorClass(info);
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClassJs));
  InitShm(env, exports);
  InitCma(env, exports);
  InitFutex(env, exports);
  InitDoorWatch(env, exports);
  InitSocketWrite(env, exports);
  InitXpmem(env, exports);
  InitProcess(env, exports);
  InitReduce(env, exports);
  InitColl(env, exports);
  InitQueue(env, exports);
  InitPmem(env, exports);
  InitLane(env, exports);
  InitUcx(env, exports);
  InitPmix(env, exports);
  InitAmo(env, exports);
  return exports;
}

}  // namespace mprun

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return mprun::Init(env, exports); }

NODE_API_MODULE(mprun_native, InitAddon)
