// The receive side of the UCX binding: the active-message handler, the inbox
// batches it appends eager messages to, the buffers rendezvous messages land
// in, and the spares they are recycled through (ucx.h, "Receive memory").
// The handler runs on whichever thread progresses the worker (the progress
// thread or JavaScript's), always under inboxLock.
#include "ucx.h"

#if MPRUN_HAVE_UCX_HEADERS

#include <cstdlib>
#include <cstring>

namespace mprun::ucx {

constexpr size_t kMaxSpares = 8;
constexpr size_t kMinBatch = 65536;
// Spares are for the steady stream of messages: a buffer over kMaxSpareBytes
// (one huge message, a batch grown while JavaScript fell behind) is freed, and
// all of them together stay under kMaxSpareTotal, not held for the whole job.
constexpr size_t kMaxSpareBytes = 8u << 20;
constexpr size_t kMaxSpareTotal = 32u << 20;

Buf TakeSpare(size_t minCap) {
  size_t best = st->spares.size();
  for (size_t i = 0; i < st->spares.size(); i++)
    if (st->spares[i].cap >= minCap && (best == st->spares.size() || st->spares[i].cap < st->spares[best].cap)) best = i;
  if (best < st->spares.size()) {
    Buf b = st->spares[best];
    st->spares.erase(st->spares.begin() + best);
    b.size = 0;
    return b;
  }
  Buf b;
  b.cap = minCap > 0 ? minCap : 1;
  b.data = static_cast<uint8_t*>(malloc(b.cap));
  if (b.data == nullptr) abort();  // as std::vector would have thrown, with nowhere to throw to
  return b;
}

void PutSpare(Buf b) {
  if (b.cap > kMaxSpareBytes) {
    free(b.data);
    return;
  }
  // Full (by count or bytes): the smallest spares make room, if the newcomer is larger.
  auto total = [] {
    size_t n = 0;
    for (const Buf& x : st->spares) n += x.cap;
    return n;
  };
  while (!st->spares.empty() && (st->spares.size() >= kMaxSpares || total() + b.cap > kMaxSpareTotal)) {
    size_t smallest = 0;
    for (size_t i = 1; i < st->spares.size(); i++)
      if (st->spares[i].cap < st->spares[smallest].cap) smallest = i;
    if (st->spares[smallest].cap >= b.cap) break;
    free(st->spares[smallest].data);
    st->spares.erase(st->spares.begin() + smallest);
  }
  if (st->spares.size() < kMaxSpares && total() + b.cap <= kMaxSpareTotal) st->spares.push_back(b);
  else free(b.data);
}

Napi::Value Lend(Napi::Env env, Buf b) {
  Lent* l = new Lent{b};
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
      env, b.data, b.size,
      [](Napi::Env, void* data, Lent* l) {
        if (!l->back) {
          if (st != nullptr) {
            auto it = st->lent.find(static_cast<uint8_t*>(data));
            if (it != st->lent.end() && it->second == l) st->lent.erase(it);
          }
          free(l->buf.data);
        }
        delete l;
      },
      l);
  if (env.IsExceptionPending() || ab.IsEmpty()) {
    // Not lent: the memory goes back to the spares, and JavaScript gets the exception.
    delete l;
    std::lock_guard<std::mutex> g(st->inboxLock);
    PutSpare(b);
    return env.Undefined();
  }
  st->lent[b.data] = l;
  return ab;
}

void AppendRecord(uint32_t source, int32_t tag, uint32_t dtype, const void* data, size_t length, uint32_t largeId) {
  size_t inlineBytes = largeId == 0 ? length : 0;
  Buf& f = st->fill;
  size_t at = f.size;
  size_t need = at + kRecordHeader + (inlineBytes + 7) / 8 * 8;
  if (f.data == nullptr) f = TakeSpare(need > kMinBatch ? need : kMinBatch);
  if (need > f.cap) {
    size_t cap = f.cap * 2 > need ? f.cap * 2 : need;
    uint8_t* grown = static_cast<uint8_t*>(realloc(f.data, cap));
    if (grown == nullptr) abort();
    f.data = grown;
    f.cap = cap;
  }
  f.size = need;
  uint32_t h[6] = {uint32_t(length), source, uint32_t(tag), dtype, largeId, 0};
  memcpy(f.data + at, h, kRecordHeader);
  if (inlineBytes > 0) memcpy(f.data + at + kRecordHeader, data, inlineBytes);
  st->inboxRecords++;
  StoreRelease(&ctl[kCtlInbox], int32_t(st->inboxRecords));
  st->events.fetch_add(1, std::memory_order_release);
}

void LargeCallback(void* request, ucs_status_t status, size_t, void* user) {
  static_cast<Large*>(user)->state.store(status, std::memory_order_release);
  api.ucp_request_free(request);
  st->events.fetch_add(1, std::memory_order_release);
}

// Header of every message: source world rank, tag, dtype (12 bytes).
ucs_status_t AmHandler(void*, const void* header, size_t headerLength, void* data, size_t length, const ucp_am_recv_param_t* param) {
  if (headerLength != 12) return UCS_OK;  // not ours: dropped
  uint32_t h[3];
  memcpy(h, header, 12);
  std::lock_guard<std::mutex> g(st->inboxLock);
  if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) == 0) {
    AppendRecord(h[0], int32_t(h[1]), h[2], data, length, 0);
    return UCS_OK;
  }
  // Rendezvous: the record keeps its place in the order of arrivals; JavaScript
  // delivers it (and whatever follows) once the data is in.
  Large* l = new Large();
  l->buf = TakeSpare(length);
  l->buf.size = length;
  uint32_t id = st->nextLarge++;
  if (st->nextLarge == 0) st->nextLarge = 1;
  st->large[id] = l;
  ucp_request_param_t p;
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_DATATYPE;
  p.cb.recv_am = LargeCallback;
  p.user_data = l;
  p.datatype = ucp_dt_make_contig(1);
  ucs_status_ptr_t r = api.ucp_am_recv_data_nbx(st->worker, data, l->buf.data, length, &p);
  if (r == nullptr) l->state.store(UCS_OK, std::memory_order_release);
  else if (UCS_PTR_IS_ERR(r)) l->state.store(UCS_PTR_STATUS(r), std::memory_order_release);
  AppendRecord(h[0], int32_t(h[1]), h[2], nullptr, length, id);
  return UCS_INPROGRESS;
}

}  // namespace mprun::ucx

#endif
