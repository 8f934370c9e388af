// The UCX binding's operations: put/get/atomics/flush/send, progress and the
// inbox. Native because UCP requests complete in C callbacks that write the
// shared slot table, with no allocation per operation (ucx-lib.cc says more).
#include "ucx.h"

#if MPRUN_HAVE_UCX_HEADERS

#include <cstring>

namespace mprun::ucx {

// put(ep, rkey, remoteAddress, src): returns when src is reusable (OpenSHMEM's
// blocking put: local completion; remote completion is flush()).
Napi::Value Put(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (st == nullptr) return ThrowCode(env, kCode, "UCX is not open");
  WorkerLock lock;
  Ep* e = EpOf(env, info[0]);
  if (e == nullptr) return env.Undefined();
  ucp_rkey_h rkey = RkeyOf(env, info[1]);
  if (rkey == nullptr) return env.Undefined();
  uint64_t raddr = uint64_t(info[2].As<Napi::Number>().DoubleValue());
  uint8_t* src;
  size_t len;
  if (!BytesOf(env, info[3], &src, &len)) return env.Undefined();
  int32_t done = UCS_INPROGRESS;
  ucp_request_param_t p;
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  p.cb.send = WaitCallback;
  p.user_data = &done;
  ucs_status_t s = WaitRequest(api.ucp_put_nbx(e->ep, src, len, raddr, rkey, &p), &done);
  if (s != UCS_OK) return Fail(env, Describe("put", len, e), s);
  return env.Undefined();
}

// A put or get with a slot: (ep, rkey, remoteAddress, bytes, slot) -> 0 done, 1 pending
// (the slot completes through the ring; the bytes must stay until then).
Napi::Value SlotRma(const Napi::CallbackInfo& info, bool put) {
  Napi::Env env = info.Env();
  if (st == nullptr) return ThrowCode(env, kCode, "UCX is not open");
  WorkerLock lock;
  Ep* e = EpOf(env, info[0]);
  if (e == nullptr) return env.Undefined();
  ucp_rkey_h rkey = RkeyOf(env, info[1]);
  if (rkey == nullptr) return env.Undefined();
  uint64_t raddr = uint64_t(info[2].As<Napi::Number>().DoubleValue());
  uint8_t* bytes;
  size_t len;
  if (!BytesOf(env, info[3], &bytes, &len)) return env.Undefined();
  uint32_t slot;
  if (!SlotOf(env, info[4], &slot)) return env.Undefined();
  ucp_request_param_t p;
  PrepareSlot(p, slot);
  ucs_status_ptr_t r = put ? api.ucp_put_nbx(e->ep, bytes, len, raddr, rkey, &p) : api.ucp_get_nbx(e->ep, bytes, len, raddr, rkey, &p);
  return Issued(env, r, slot, put ? "put" : "get", len, e);
}

// putNbi(ep, rkey, remoteAddress, src, slot): 0 done (src reusable), 1 pending: src
// must stay unchanged until the slot completes (OpenSHMEM's put_nbi; a flush
// waits for it too). Puts of a window then overlap, as MPI_Put's do.
Napi::Value PutNbi(const Napi::CallbackInfo& info) { return SlotRma(info, true); }

// get(ep, rkey, remoteAddress, dst, slot): 0 done, 1 pending (the slot completes).
Napi::Value Get(const Napi::CallbackInfo& info) { return SlotRma(info, false); }

// atomic(ep, rkey, remoteAddress, op, size, operand, compare, slot): op is
// UCP's (ADD 0, SWAP 1, CSWAP 2); the old value lands in result[slot].
Napi::Value Atomic(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (st == nullptr) return ThrowCode(env, kCode, "UCX is not open");
  WorkerLock lock;
  Ep* e = EpOf(env, info[0]);
  if (e == nullptr) return env.Undefined();
  ucp_rkey_h rkey = RkeyOf(env, info[1]);
  if (rkey == nullptr) return env.Undefined();
  uint64_t raddr = uint64_t(info[2].As<Napi::Number>().DoubleValue());
  uint32_t op = info[3].As<Napi::Number>().Uint32Value();
  uint32_t size = info[4].As<Napi::Number>().Uint32Value();
  uint32_t slot;
  if (!SlotOf(env, info[7], &slot)) return env.Undefined();
  if (op > UCP_ATOMIC_OP_CSWAP || (size != 4 && size != 8)) {
    Napi::RangeError::New(env, "atomic: bad operation or size").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int64_t operand = OperandOf(info[5]);
  ucp_request_param_t p;
  PrepareSlot(p, slot);
  p.op_attr_mask |= UCP_OP_ATTR_FIELD_DATATYPE | UCP_OP_ATTR_FIELD_REPLY_BUFFER;
  p.datatype = ucp_dt_make_contig(size);
  p.reply_buffer = &resultOf[slot];
  resultOf[slot] = 0;
  if (op == UCP_ATOMIC_OP_CSWAP) {
    // buffer: the compare value; reply_buffer: the new value in, the old value out.
    int64_t compare = OperandOf(info[6]);
    if (size == 4) {
      int32_t c = int32_t(compare), n = int32_t(operand);
      memcpy(&operandOf[slot], &c, 4);
      memcpy(&resultOf[slot], &n, 4);
    } else {
      operandOf[slot] = compare;
      resultOf[slot] = operand;
    }
  } else if (size == 4) {
    int32_t v = int32_t(operand);
    memcpy(&operandOf[slot], &v, 4);
  } else {
    operandOf[slot] = operand;
  }
  return Issued(env, api.ucp_atomic_op_nbx(e->ep, ucp_atomic_op_t(op), &operandOf[slot], 1, raddr, rkey, &p), slot, "atomic", kNoBytes, e);
}

// flush(ep | -1, slot): every operation on the endpoint (or the worker) complete at its target.
Napi::Value Flush(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (st == nullptr) return ThrowCode(env, kCode, "UCX is not open");
  WorkerLock lock;
  uint32_t slot;
  if (!SlotOf(env, info[1], &slot)) return env.Undefined();
  ucp_request_param_t p;
  PrepareSlot(p, slot);
  double id = info[0].As<Napi::Number>().DoubleValue();
  if (id < 0) return Issued(env, api.ucp_worker_flush_nbx(st->worker, &p), slot, "flush", kNoBytes, nullptr);
  Ep* e = EpOf(env, info[0]);
  if (e == nullptr) return env.Undefined();
  return Issued(env, api.ucp_ep_flush_nbx(e->ep, &p), slot, "flush", kNoBytes, e);
}

// send(ep, source, tag, dtype, payload, slot): 0 sent (payload reusable), 1 pending.
Napi::Value Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (st == nullptr) return ThrowCode(env, kCode, "UCX is not open");
  WorkerLock lock;
  Ep* e = EpOf(env, info[0]);
  if (e == nullptr) return env.Undefined();
  uint8_t* data;
  size_t len;
  if (!BytesOf(env, info[4], &data, &len)) return env.Undefined();
  uint32_t slot;
  if (!SlotOf(env, info[5], &slot)) return env.Undefined();
  ucp_request_param_t p;
  PrepareSlot(p, slot);
  p.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FIELD_DATATYPE;
  p.datatype = ucp_dt_make_contig(1);
  p.flags = 0;
  // UCX 1.13 has no UCP_AM_SEND_FLAG_COPY_HEADER: a rendezvous send reads the
  // header after this returns, so it lives in the slot until completion.
  uint32_t* header = &headerOf[slot * 4];
  header[0] = info[1].As<Napi::Number>().Uint32Value();
  header[1] = uint32_t(info[2].As<Napi::Number>().Int32Value());
  header[2] = info[3].As<Napi::Number>().Uint32Value();
  return Issued(env, api.ucp_am_send_nbx(e->ep, kAmId, header, 12, data, len, &p), slot, "send", len, e);
}

// progress(): progresses the worker until it has nothing to do; the number of events.
Napi::Value Progress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (st == nullptr) return Napi::Number::New(env, 0);
  WorkerLock lock;
  if (st->progressing) st->lastMainProgress.store(NowNs(), std::memory_order_relaxed);
  unsigned n = 0, k;
  int rounds = 0;
  while ((k = api.ucp_worker_progress(st->worker)) != 0 && ++rounds < 64) n += k;
  return Napi::Number::New(env, n);
}

// arm(): true when the caller may sleep on the event fd (nothing pending).
Napi::Value Arm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Opened(env)) return env.Undefined();
  WorkerLock lock;
  ucs_status_t s = api.ucp_worker_arm(st->worker);
  if (s == UCS_OK) {
    st->arms.fetch_add(1, std::memory_order_release);
    return Napi::Boolean::New(env, true);
  }
  if (s == UCS_ERR_BUSY) return Napi::Boolean::New(env, false);
  return Fail(env, "ucp_worker_arm", s);
}

// takeMessages(): the records appended since the last call, as one ArrayBuffer, or null.
Napi::Value TakeMessages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (st == nullptr) return env.Null();
  Buf batch;
  {
    std::lock_guard<std::mutex> g(st->inboxLock);
    if (st->inboxRecords == 0) return env.Null();
    batch = st->fill;
    st->fill = Buf();  // the next record takes a spare
    st->inboxRecords = 0;
    StoreRelease(&ctl[kCtlInbox], 0);
  }
  return Lend(env, batch);
}

// giveBack(buffer): an ArrayBuffer of takeMessages() or takeLarge() that
// JavaScript is done with: detached (a view kept by mistake reads nothing) and
// its memory kept for the next messages. Others are ignored.
Napi::Value GiveBack(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (st == nullptr || !info[0].IsArrayBuffer()) return env.Undefined();
  Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
  auto it = st->lent.find(static_cast<uint8_t*>(ab.Data()));
  if (it == st->lent.end()) return env.Undefined();
  Lent* l = it->second;
  Buf b = l->buf;
  l->back = true;  // before the detach: its finalizer may run from it, and frees only tickets not given back
  if (napi_detach_arraybuffer(env, ab) != napi_ok) {
    // Still attached: JavaScript could read it, so it is not reused (its finalizer frees it).
    l->back = false;
    return ThrowCode(env, kCode, "giveBack: the buffer could not be detached");
  }
  st->lent.erase(it);
  std::lock_guard<std::mutex> g(st->inboxLock);
  PutSpare(b);
  return env.Undefined();
}

// takeLarge(id): the message's bytes once received (an ArrayBuffer that owns them), else null.
Napi::Value TakeLarge(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Opened(env)) return env.Undefined();
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  Large* l;
  {
    std::lock_guard<std::mutex> g(st->inboxLock);
    auto it = st->large.find(id);
    if (it == st->large.end()) return ThrowCode(env, kCode, "no large message " + std::to_string(id));
    l = it->second;
    int s = l->state.load(std::memory_order_acquire);
    if (s == UCS_INPROGRESS) return env.Null();
    st->large.erase(it);
    if (s != UCS_OK) {
      std::string what = "receiving a message of " + std::to_string(l->buf.size) + " bytes";
      PutSpare(l->buf);
      delete l;
      return Fail(env, what, ucs_status_t(s));
    }
  }
  Buf b = l->buf;
  delete l;
  return Lend(env, b);
}

Napi::Value StatusStringJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Napi::String::New(env, StatusString(ucs_status_t(info[0].As<Napi::Number>().Int32Value())));
}

// epFailure(ep): the endpoint's peer name and failure ("" while healthy).
Napi::Value EpFailure(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (st == nullptr) return Napi::String::New(env, "");
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  if (id >= st->eps.size() || st->eps[id] == nullptr) return Napi::String::New(env, "");
  int s = st->eps[id]->status.load();
  return Napi::String::New(env, s == 0 ? "" : StatusString(ucs_status_t(s)));
}

void InitOps(Napi::Env env, Napi::Object u) {
  u.Set("epFailure", Napi::Function::New(env, EpFailure));
  u.Set("put", Napi::Function::New(env, Put));
  u.Set("putNbi", Napi::Function::New(env, PutNbi));
  u.Set("get", Napi::Function::New(env, Get));
  u.Set("atomic", Napi::Function::New(env, Atomic));
  u.Set("flush", Napi::Function::New(env, Flush));
  u.Set("send", Napi::Function::New(env, Send));
  u.Set("progress", Napi::Function::New(env, Progress));
  u.Set("arm", Napi::Function::New(env, Arm));
  u.Set("takeMessages", Napi::Function::New(env, TakeMessages));
  u.Set("takeLarge", Napi::Function::New(env, TakeLarge));
  u.Set("giveBack", Napi::Function::New(env, GiveBack));
  u.Set("statusString", Napi::Function::New(env, StatusStringJs));
}

}  // namespace mprun::ucx

#endif
