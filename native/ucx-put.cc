// Puts as our own active messages, for links where UCX's RMA is software (TCP).
//
// There UCP emulates a put with an active message that the target acknowledges
// (PUT, then CMPL back), and ucp_ep_flush_nbx adds a remote flush of the TCP
// lane: a zero-length PUT_REQ answered by a PUT_ACK (seen with strace). So a
// put+quiet sent two messages each way, and took 58-66 us across the namespace
// link with the target polling, against 33-35 us for a get (one each way).
// Here a put is one active message (the address and our endpoint's id in the
// header, the bytes as its data) that the target writes into its registered
// memory and acknowledges; a flush waits for the acknowledgements of every put
// issued before it: one message each way, nothing else on the wire.
//
// The target writes only inside memory it registered (mem_map): a put that
// names any other address is refused, and the refusal is reported by the
// initiator's next flush. Puts are counted, not matched: a flush waits until
// the endpoint's acknowledgements reach the count of puts issued before it, so
// the order in which they arrive does not matter.
#include "ucx.h"

#if MPRUN_HAVE_UCX_HEADERS

#include <cstring>

namespace mprun::ucx {

namespace {

// What a flush says of a put its target refused (transports/ucx/transport.ts says the same).
constexpr const char* kRefused = "a put was refused there (outside its registered memory)";

struct PutHeader {
  uint64_t address;  // where in the target's registered memory
  uint32_t ep;       // the initiator's endpoint id (the acknowledgement names it)
  uint32_t pad;
};
static_assert(sizeof(PutHeader) == 16, "a put's header fills its slot's 16 header bytes");

struct AckHeader {
  uint32_t ep;
  int32_t status;  // UCS_OK, or why the put was refused
};

bool InRegistered(uint64_t address, uint64_t length) {
  for (const Region& r : st->regions)
    if (r.length > 0 && address >= r.base && length <= r.length && address - r.base <= r.length - length) return true;
  return false;
}

void AckSent(void* request, ucs_status_t, void* user) {
  delete static_cast<AckHeader*>(user);
  api.ucp_request_free(request);
}

// Target: write the bytes, then acknowledge on the endpoint they came by.
ucs_status_t PutHandler(void*, const void* header, size_t headerLength, void* data, size_t length, const ucp_am_recv_param_t* param) {
  if (headerLength != sizeof(PutHeader) || (param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) == 0) return UCS_OK;  // not ours: dropped
  PutHeader h;
  memcpy(&h, header, sizeof h);
  AckHeader* ack = new AckHeader{h.ep, UCS_OK};
  if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0) ack->status = UCS_ERR_UNSUPPORTED;  // sent eager: never
  else if (!InRegistered(h.address, length)) ack->status = UCS_ERR_INVALID_ADDR;
  else if (length > 0) memcpy(reinterpret_cast<void*>(uintptr_t(h.address)), data, length);
  // UCX 1.13 reads the header after the call when the send cannot go at once, so it
  // lives until the send completes. A send that fails here fails the endpoint, and
  // the initiator's error handler fails its flushes.
  ucp_request_param_t p;
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
  p.cb.send = AckSent;
  p.user_data = ack;
  p.flags = UCP_AM_SEND_FLAG_EAGER;
  ucs_status_ptr_t r = api.ucp_am_send_nbx(param->reply_ep, kAmAckId, ack, sizeof *ack, nullptr, 0, &p);
  if (r == nullptr || UCS_PTR_IS_ERR(r)) delete ack;
  st->events.fetch_add(1, std::memory_order_release);
  return UCS_OK;
}

// Completes the flushes of `e` that waited for no more than its acknowledged puts.
void CompleteFlushes(Ep* e) {
  auto& w = e->putFlushes;
  size_t done = 0;
  while (done < w.size() && w[done].first <= e->putsAcked) {
    Complete(w[done].second, e->putRefused);
    e->putRefused = UCS_OK;  // reported once
    done++;
  }
  w.erase(w.begin(), w.begin() + long(done));
}

// Initiator: one more put of ours is in the target's memory (or was refused).
ucs_status_t AckHandler(void*, const void* header, size_t headerLength, void*, size_t, const ucp_am_recv_param_t*) {
  if (headerLength != sizeof(AckHeader)) return UCS_OK;
  AckHeader a;
  memcpy(&a, header, sizeof a);
  if (a.ep >= st->eps.size() || st->eps[a.ep] == nullptr) return UCS_OK;
  Ep* e = st->eps[a.ep].get();
  e->putsAcked++;
  if (a.status != UCS_OK && e->putRefused == UCS_OK) e->putRefused = ucs_status_t(a.status);
  CompleteFlushes(e);
  return UCS_OK;
}

// amPut(ep, remoteAddress, src, slot): slot -1 returns once src is reusable; with a
// slot, 0 done (src reusable) or 1 pending (src must stay until the slot completes).
Napi::Value AmPut(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (st == nullptr) return ThrowCode(env, kCode, "UCX is not open");
  WorkerLock lock;
  Ep* e = EpOf(env, info[0]);
  if (e == nullptr) return env.Undefined();
  uint64_t address = uint64_t(info[1].As<Napi::Number>().DoubleValue());
  uint8_t* src;
  size_t len;
  if (!BytesOf(env, info[2], &src, &len)) return env.Undefined();
  int64_t slotArg = info[3].As<Napi::Number>().Int64Value();
  ucp_request_param_t p;
  int32_t done = UCS_INPROGRESS;
  PutHeader local{address, e->id, 0};
  PutHeader* header = &local;
  uint32_t slot = 0;
  if (slotArg < 0) {
    p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    p.cb.send = WaitCallback;
    p.user_data = &done;
  } else {
    if (!SlotOf(env, info[3], &slot)) return env.Undefined();
    PrepareSlot(p, slot);
    header = reinterpret_cast<PutHeader*>(&headerOf[slot * 4]);
    *header = local;
  }
  p.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FIELD_DATATYPE;
  p.datatype = ucp_dt_make_contig(1);
  p.flags = UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_EAGER;
  ucs_status_ptr_t r = api.ucp_am_send_nbx(e->ep, kAmPutId, header, sizeof *header, src, len, &p);
  if (!UCS_PTR_IS_ERR(r)) e->putsSent++;
  if (slotArg >= 0) return Issued(env, r, slot, "put", len, e);
  ucs_status_t s = WaitRequest(r, &done);
  if (s != UCS_OK) return Fail(env, Describe("put", len, e), s);
  return env.Undefined();
}

// flushPuts(ep, slot): 0 when every put issued on the endpoint is acknowledged,
// 1 pending (the slot completes when they are); throws a refusal not yet reported.
Napi::Value FlushPuts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (st == nullptr) return ThrowCode(env, kCode, "UCX is not open");
  WorkerLock lock;
  Ep* e = EpOf(env, info[0]);
  if (e == nullptr) return env.Undefined();
  uint32_t slot;
  if (!SlotOf(env, info[1], &slot)) return env.Undefined();
  if (int s = e->status.load(); s != 0) return Fail(env, "flush to " + e->peer, ucs_status_t(s));
  if (e->putsAcked >= e->putsSent) {
    ucs_status_t refused = e->putRefused;
    e->putRefused = UCS_OK;
    if (refused != UCS_OK) return Fail(env, "flush to " + e->peer + " failed: " + kRefused, refused);
    statusOf[slot] = UCS_OK;
    return Napi::Number::New(env, 0);
  }
  statusOf[slot] = UCS_INPROGRESS;
  e->putFlushes.emplace_back(e->putsSent, slot);
  return Napi::Number::New(env, 1);
}

}  // namespace

ucs_status_t SetPutHandlers(ucp_worker_h worker) {
  ucp_am_handler_param_t hp{};
  hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
  hp.flags = UCP_AM_FLAG_WHOLE_MSG;
  hp.id = kAmPutId;
  hp.cb = PutHandler;
  ucs_status_t s = api.ucp_worker_set_am_recv_handler(worker, &hp);
  if (s != UCS_OK) return s;
  hp.id = kAmAckId;
  hp.cb = AckHandler;
  return api.ucp_worker_set_am_recv_handler(worker, &hp);
}

void FailPutFlushes(Ep* e, ucs_status_t status) {
  for (const auto& w : e->putFlushes) Complete(w.second, status);
  e->putFlushes.clear();
}

void InitPuts(Napi::Env env, Napi::Object u) {
  u.Set("amPut", Napi::Function::New(env, AmPut));
  u.Set("flushPuts", Napi::Function::New(env, FlushPuts));
}

}  // namespace mprun::ucx

#endif
