// The Node-API functions of the agent's serving thread (amo-server.cc): start and stop it,
// give it the memory it serves.
#include "amo-server.h"
#include "common.h"
#include "words.h"
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

namespace mprun::amo {
namespace {

// By handle; null once stopped. Never destroyed: a process that exits with a server still
// running must not run ~thread on its thread (std::terminate).
auto& servers = *new std::vector<std::unique_ptr<Server>>();

Server* ServerOf(Napi::Env env, Napi::Value v) {
  uint32_t h = v.As<Napi::Number>().Uint32Value();
  if (h >= servers.size() || servers[h] == nullptr) {
    ThrowCode(env, "ERR_MPRUN_ARG", "no atomics server " + std::to_string(h));
    return nullptr;
  }
  return servers[h].get();
}

// amoServe(host, secret, nodeIndex, nnodes, spinUs, authTimeoutMs): { handle, port } of a server
// listening on host (port chosen by the kernel), polling for spinUs after each event before it
// sleeps, closing a connection whose hello has not come within authTimeoutMs.
Napi::Value AmoServe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string host = info[0].As<Napi::String>().Utf8Value();
  auto s = std::make_unique<Server>();
  s->secret = info[1].As<Napi::String>().Utf8Value();
  s->nodeIndex = info[2].As<Napi::Number>().Uint32Value();
  s->nnodes = std::max(1u, info[3].As<Napi::Number>().Uint32Value());
  s->spinNs = words::BudgetNs(info[4].As<Napi::Number>().DoubleValue() * 1000);
  s->authTimeoutNs = uint64_t(std::max(1.0, info[5].As<Napi::Number>().DoubleValue()) * 1e6);
  uint16_t port = 0;
  int err = 0;
  std::string detail;
  const char* failed = StartServer(s.get(), host, &port, &err, &detail);
  if (failed != nullptr && err == 0) return ThrowCode(env, "ERR_MPRUN_ARG", "atomics server: bad host " + host + ": " + detail);
  if (failed != nullptr) return ThrowErrno(env, "ERR_MPRUN_SYSTEM", err, failed, "atomics server on " + host);
  servers.push_back(std::move(s));
  Napi::Object out = Napi::Object::New(env);
  out.Set("handle", double(servers.size() - 1));
  out.Set("port", double(port));
  return out;
}

// The server of info[0] and the memory of info[2] (the register calls); false with an exception pending.
bool ServerAndMemory(const Napi::CallbackInfo& info, Server** s, uint8_t** base, size_t* length) {
  *s = ServerOf(info.Env(), info[0]);
  return *s != nullptr && BytesOf(info.Env(), info[2], base, length);
}

// amoRegister(handle, id, segment, versionsOffset, dataOffset, pages, bytes): serve variable `id`.
// The segment stays mapped until amoUnregister (the agent detaches it only after).
Napi::Value AmoRegister(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Server* s; uint8_t* base; size_t length;
  if (!ServerAndMemory(info, &s, &base, &length)) return env.Undefined();
  uint64_t versions = uint64_t(info[3].As<Napi::Number>().DoubleValue());
  uint64_t data = uint64_t(info[4].As<Napi::Number>().DoubleValue());
  uint32_t pages = info[5].As<Napi::Number>().Uint32Value();
  uint64_t bytes = uint64_t(info[6].As<Napi::Number>().DoubleValue());
  if (versions + 4ull * pages > length || data + uint64_t(pages) * kPageBytes > length || bytes > uint64_t(pages) * kPageBytes) {
    return ThrowCode(env, "ERR_MPRUN_ARG", "amoRegister: the layout is outside the segment");
  }
  std::lock_guard<std::mutex> g(s->lock);
  s->vars[info[1].As<Napi::Number>().Uint32Value()] = Variable{base + versions, base + data, bytes, pages};
  return env.Undefined();
}

// amoRegisterHeap(handle, worldRank, heap, ctrlWords, sleepingIndex, doorIndex, wake): serve
// atomics on that rank's heap (mapped, as the control segment, until the server stops).
Napi::Value AmoRegisterHeap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Server* s; uint8_t* base; size_t length;
  if (!ServerAndMemory(info, &s, &base, &length)) return env.Undefined();
  size_t nwords = 0;
  int32_t* words = words::Int32s(info[3], &nwords);
  int64_t sleeping = info[4].As<Napi::Number>().Int64Value(), door = info[5].As<Napi::Number>().Int64Value();
  if (words == nullptr || sleeping < 0 || door < 0 || size_t(sleeping) >= nwords || size_t(door) >= nwords) {
    return ThrowCode(env, "ERR_MPRUN_ARG", "amoRegisterHeap: the doorbell is outside the control words");
  }
  std::lock_guard<std::mutex> g(s->lock);
  s->heaps[info[1].As<Napi::Number>().Uint32Value() & ~kHeapTarget] = Heap{base, length, words + sleeping, words + door, info[6].As<Napi::Number>().Int32Value()};
  return env.Undefined();
}

Napi::Value AmoUnregister(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Server* s = ServerOf(env, info[0]);
  if (s == nullptr) return env.Undefined();
  std::lock_guard<std::mutex> g(s->lock);
  s->vars.erase(info[1].As<Napi::Number>().Uint32Value());
  return env.Undefined();
}

Napi::Value AmoStop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Server* s = ServerOf(env, info[0]);
  if (s == nullptr) return env.Undefined();
  StopServer(s);
  servers[info[0].As<Napi::Number>().Uint32Value()].reset();
  return env.Undefined();
}

}  // namespace

}  // namespace mprun::amo

namespace mprun {

void InitAmo(Napi::Env env, Napi::Object exports) {
  Napi::Object amo = Napi::Object::New(env);
  amo.Set("serve", Napi::Function::New(env, amo::AmoServe));
  amo.Set("register", Napi::Function::New(env, amo::AmoRegister));
  amo.Set("unregister", Napi::Function::New(env, amo::AmoUnregister));
  amo.Set("registerHeap", Napi::Function::New(env, amo::AmoRegisterHeap));
  amo.Set("stop", Napi::Function::New(env, amo::AmoStop));
  amo::InitClient(env, amo);
  exports.Set("amo", amo);
}

}  // namespace mprun
