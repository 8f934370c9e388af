// The eager path of the node's message queues (transports/shm/queue.ts) as
// native code: posting a small message into a peer's queue, and taking the
// record at the head of this rank's queue straight into a receive's buffer
// when it is the message that receive waits for. The record format, the
// reservation by compare-exchange on the tail, the zeroed cell boundaries and
// the doorbells are queue.ts's, word for word: the TypeScript side reads and
// writes the same queues (fragments, relayed messages, every record this path
// leaves alone) and the two interleave freely. Why native: README, "Cold and
// steady" (the TypeScript steps cost several microseconds a message until V8
// has compiled them, and their compilation stalls the peer that waits).
#include "words.h"
#include <cstring>
#include <string>

namespace mprun {
namespace {

using namespace words;

constexpr int32_t KIND_EAGER = 1;
constexpr int32_t HEADER = 32;
constexpr int32_t CELL = 64;
constexpr int32_t CELL_WORDS = CELL / 4;
constexpr int32_t WAKE_MESSAGE = 1;
constexpr int32_t INTERNAL_TAG = 0x40000000;
constexpr int32_t ANY = -1;

// queueRecvInto's results besides a length
constexpr int NOT_THIS = -1;  // the head record is not the awaited eager message: the TypeScript side takes it
constexpr int EMPTY = -2;     // nothing arrived within the poll

struct Queues {
  int32_t* words;
  uint8_t* bytes;
  int me;
  int participants;
  uint32_t cap;
  std::vector<int32_t> ring, tail, head, want, sleeping, door;  // per participant: byte offset / word indices
  int32_t* headSeen;  // producer: each destination's head as last read (queue.ts's array)
  int32_t* state;     // consumer: [0] our head (queue.ts's, shared)
  std::vector<int32_t> worldOf;  // world rank of each local participant (-1: the gateway, whose records carry their origin)
  // queue.ts's staging array, receive result and call arguments (held by the NodeQueues
  // that holds this handle): small messages pass through them, so that their calls take
  // no argument at all (sendStaged, recvStaged): no typed array for Node-API to inspect,
  // no number to convert, no handle to unwrap.
  uint8_t* stage;
  size_t stageBytes;
  int32_t* out;   // [source, tag] of the last message taken
  int32_t* args;  // sendStaged: [dest, tag, dtype, origin, bytes]; recvStaged: [room, dtype, source, tag, spinNs, dozeNs]
};

inline int32_t RecordBytes(int32_t payload) { return (HEADER + payload + CELL - 1) & ~(CELL - 1); }

// ControlSegment.ring(r, WAKE_MESSAGE).
void Ring(Queues& q, int r) { words::Ring(q.words, q.sleeping[r], q.door[r], WAKE_MESSAGE); }

// queue.ts #reserve: the byte offset of the record's header, or -1 when dest's queue has no room now.
int64_t Reserve(Queues& q, int dest, int32_t payload) {
  const int32_t size = RecordBytes(payload);
  const int32_t cap = static_cast<int32_t>(q.cap);
  int32_t* tailWord = q.words + q.tail[dest];
  int32_t* headWord = q.words + q.head[dest];
  for (;;) {
    int32_t tail = Load(tailWord);
    int32_t pos = static_cast<int32_t>(static_cast<uint32_t>(tail) & (q.cap - 1));
    int32_t toEnd = cap - pos;
    int32_t need = toEnd < size ? toEnd + size : size;
    int32_t used = Sub(tail, q.headSeen[dest]);
    if (used < 0 || cap - used < need) {
      q.headSeen[dest] = Load(headWord);
      used = Sub(tail, q.headSeen[dest]);
      if (used < 0) continue;
      if (cap - used < need) {
        Store(q.words + q.want[dest], 1);
        q.headSeen[dest] = Load(headWord);
        if (cap - Sub(tail, q.headSeen[dest]) < need) return -1;
        continue;
      }
    }
    int32_t expected = tail;
    if (!__atomic_compare_exchange_n(tailWord, &expected, Add(tail, need), false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) continue;
    const int64_t base = q.ring[dest];
    if (toEnd < size) {
      Store(q.words + ((base + pos) >> 2), -toEnd);  // padding to the ring's end; the record starts over at 0
      return base;
    }
    return base + pos;
  }
}

// queue.ts #advance: our head moves on; a producer waiting for room is rung.
void Advance(Queues& q, int32_t head) {
  q.state[0] = head;
  Store(q.words + q.head[q.me], head);
  int32_t* want = q.words + q.want[q.me];
  if (Load(want) != 0 && __atomic_exchange_n(want, 0, __ATOMIC_SEQ_CST) != 0) {
    for (int r = 0; r < q.participants; r++)
      if (r != q.me) Ring(q, r);
  }
}

Queues* Of(const Napi::CallbackInfo& info) { return info[0].As<Napi::External<Queues>>().Data(); }

Napi::Value SendStaged(const Napi::CallbackInfo& info);
Napi::Value RecvStaged(const Napi::CallbackInfo& info);

// queueOpen(words: Int32Array, me, ringBytes, ring, tail, head, want, sleeping, door: Int32Array
//           (per participant), headSeen: Int32Array, state: Int32Array(1), stage: ArrayBuffer,
//           out: Int32Array(2), args: Int32Array(6)) -> { handle, sendStaged, recvStaged }
Napi::Value Open(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  size_t nwords = 0;
  int32_t* words = Int32s(info[0], &nwords);
  if (words == nullptr) return ThrowCode(env, "ERR_MPRUN_ARG", "queueOpen: words must be an Int32Array");
  auto q = new Queues();
  q->words = words;
  q->bytes = reinterpret_cast<uint8_t*>(words);
  q->me = info[1].As<Napi::Number>().Int32Value();
  q->cap = info[2].As<Napi::Number>().Uint32Value();
  size_t p = info[3].IsTypedArray() ? info[3].As<Napi::TypedArray>().ElementLength() : 0;
  q->participants = static_cast<int>(p);
  bool ok = p > 0 && q->me >= 0 && q->me < q->participants && q->cap >= 4096 && (q->cap & (q->cap - 1)) == 0 && nwords * 4 >= q->cap;
  // A ring's byte offset leaves room for the whole ring in the segment; the rest are word indices.
  ok = ok && Indices(info[3], p, nwords * 4 - q->cap + 1, &q->ring) && Indices(info[4], p, nwords, &q->tail) && Indices(info[5], p, nwords, &q->head) && Indices(info[6], p, nwords, &q->want) && Indices(info[7], p, nwords, &q->sleeping) && Indices(info[8], p, nwords, &q->door);
  size_t seen = 0;
  size_t states = 0;
  int32_t* headSeen = Int32s(info[9], &seen);
  int32_t* state = Int32s(info[10], &states);
  size_t outs = 0;
  int32_t* out = Int32s(info[12], &outs);
  size_t nargs = 0;
  int32_t* args = Int32s(info[13], &nargs);
  ok = ok && headSeen != nullptr && seen == p && state != nullptr && states >= 1 && info[11].IsArrayBuffer() && out != nullptr && outs >= 2 && args != nullptr && nargs >= 6;
  if (!ok) {
    delete q;
    return ThrowCode(env, "ERR_MPRUN_ARG", "queueOpen: inconsistent queue layout");
  }
  q->headSeen = headSeen;
  q->state = state;
  auto stage = info[11].As<Napi::ArrayBuffer>();
  q->stage = static_cast<uint8_t*>(stage.Data());
  q->stageBytes = stage.ByteLength();
  q->out = out;
  q->args = args;
  q->worldOf.assign(p, -1);
  // The arrays it points into (the segment, headSeen, state, args) are held by the NodeQueues
  // that holds this handle, which the two functions bound to it hold too.
  auto binding = Napi::Object::New(env);
  auto handle = Napi::External<Queues>::New(env, q, [](Napi::Env, Queues* x) { delete x; });
  binding.Set("handle", handle);
  binding.Set("sendStaged", BoundFunction<SendStaged>(env, "sendStaged", q, handle));
  binding.Set("recvStaged", BoundFunction<RecvStaged>(env, "recvStaged", q, handle));
  return binding;
}

// queueWorldRanks(handle, worldOfLocal: Int32Array): the world rank of each local participant.
Napi::Value WorldRanks(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  Queues* q = Of(info);
  size_t n = 0;
  const int32_t* a = Int32s(info[1], &n);
  if (a == nullptr) return ThrowCode(env, "ERR_MPRUN_ARG", "queueWorldRanks: expects an Int32Array");
  for (size_t r = 0; r < n && r < q->worldOf.size(); r++) q->worldOf[r] = a[r];
  return env.Undefined();
}

// queue.ts trySendEager: whether `length` bytes at `data` are in dest's queue (false: no room now).
Napi::Value Send(Napi::Env env, Queues* q, int dest, int32_t tag, int32_t dtype, const uint8_t* data, size_t length, int32_t origin) {
  if (dest < 0 || dest >= q->participants || length > q->cap - HEADER) return ThrowCode(env, "ERR_MPRUN_ARG", "queueSendEager: no such queue, or a record larger than the ring");
  const int32_t payload = static_cast<int32_t>(length);
  int64_t at = Reserve(*q, dest, payload);
  if (at < 0) return Napi::Boolean::New(env, false);
  int32_t* w = q->words + (at >> 2);
  w[1] = tag;
  if (payload > 0) std::memcpy(q->bytes + at + HEADER, data, length);
  w[2] = KIND_EAGER | (dtype << 4) | (q->me << 8);
  w[3] = payload;
  w[4] = origin + 1;
  Store(w, RecordBytes(payload));
  Ring(*q, dest);
  return Napi::Boolean::New(env, true);
}

// queueSendEager(handle, dest, tag, dtype, payload: ArrayBufferView, origin, bytes): the first
// `bytes` bytes of payload.
Napi::Value SendEager(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  uint8_t* data = nullptr;
  size_t length = 0;
  if (!BytesOf(env, info[4], &data, &length)) return env.Undefined();
  const size_t given = static_cast<size_t>(info[6].As<Napi::Number>().Int64Value());
  if (given > length) return ThrowCode(env, "ERR_MPRUN_ARG", "queueSendEager: more bytes than the payload has");
  return Send(env, Of(info), info[1].As<Napi::Number>().Int32Value(), info[2].As<Napi::Number>().Int32Value(), info[3].As<Napi::Number>().Int32Value(), data, given, info[5].As<Napi::Number>().Int32Value());
}

// sendStaged() (bound to its queues by queueOpen): queueSendEager of the first args[4] bytes of
// the staging array, to args[0] with tag args[1], type args[2] and origin args[3].
Napi::Value SendStaged(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  Queues* q = static_cast<Queues*>(info.Data());
  const int32_t* a = q->args;
  if (a[4] < 0 || static_cast<size_t>(a[4]) > q->stageBytes) return ThrowCode(env, "ERR_MPRUN_ARG", "sendStaged: more bytes than the staging array has");
  return Send(env, q, a[0], a[1], a[2], q->stage, static_cast<size_t>(a[4]), a[3]);
}

// queueRecvInto(handle, into: ArrayBufferView, room, dtype, source, tag, spinNs, dozeNs, out: Int32Array(2))
// -> the message's bytes (out: its source and tag), NOT_THIS or EMPTY. Takes the record at our
// head when it is an eager message of `dtype` that fits the first `room` bytes of `into` and that a receive of
// (source, tag) matches (ANY = -1; the runtime's own tags match no user receive). While our queue
// is empty it polls for `budget` ns, then sleeps on our doorbell for up to `doze` ns (0: not at all).
Napi::Value Take(Napi::Env env, Queues* q, uint8_t* into, size_t room, int32_t dtype, int32_t source, int32_t tag, uint64_t budget, uint64_t doze, int32_t* out) {
  const int64_t base = q->ring[q->me];
  for (bool waited = false;;) {
    int32_t head = q->state[0];
    int32_t* w = q->words + ((base + (static_cast<uint32_t>(head) & (q->cap - 1))) >> 2);
    int32_t size = Load(w);
    // Sizes another process wrote: checked before they steer a copy or the zeroing (poll() too).
    auto damaged = [&](const char* what) {
      return ThrowCode(env, "ERR_MPRUN_PROTOCOL", "local rank " + std::to_string(q->me) + "'s message queue holds a damaged " + what + " (" + std::to_string(size) + " bytes at offset " + std::to_string(static_cast<uint32_t>(head) & (q->cap - 1)) + " of a " + std::to_string(q->cap) + "-byte ring): a process of the job wrote over the node's segment");
    };
    if (size < 0) {
      if (-static_cast<int64_t>(size) != static_cast<int64_t>(q->cap) - (static_cast<uint32_t>(head) & (q->cap - 1))) return damaged("padding");
      // Padding: the record is at the start of the ring. Our head moves past it now, as poll() would.
      *w = 0;
      head = Sub(head, size);
      Advance(*q, head);
      w = q->words + (base >> 2);
      size = Load(w);
      // The producer writes the padding before its record: a wait that saw the one may wait for the other.
      waited = false;
    }
    if (size == 0) {
      // Once: a record that came (its first word set) is read again from the top (it may be padding).
      if (waited || !WaitUntil([w] { return Load(w) != 0; }, budget, doze, false, q->words, q->sleeping[q->me], q->door[q->me], WAKE_MESSAGE)) return Napi::Number::New(env, EMPTY);
      waited = true;
      continue;
    }
    const int32_t rtag = w[1];
    const int32_t meta = w[2];
    const int32_t length = w[3];
    if (size % CELL != 0 || static_cast<int64_t>(size) > static_cast<int64_t>(q->cap) - (static_cast<uint32_t>(head) & (q->cap - 1)) || length < 0 || length > size - HEADER) return damaged("record");
    const int32_t origin = w[4] - 1;
    const int producer = static_cast<int>(static_cast<uint32_t>(meta) >> 8);
    const int32_t from = origin >= 0 ? origin : (producer < q->participants ? q->worldOf[producer] : -1);
    if ((meta & 0xf) != KIND_EAGER || ((meta >> 4) & 0xf) != dtype || length < 0 || static_cast<size_t>(length) > room || rtag >= INTERNAL_TAG || from < 0 || (source != ANY && from != source) || (tag != ANY && rtag != tag)) {
      return Napi::Number::New(env, NOT_THIS);
    }
    std::memcpy(into, reinterpret_cast<uint8_t*>(w) + HEADER, static_cast<size_t>(length));
    for (int32_t c = 0; c < size / 4; c += CELL_WORDS) w[c] = 0;
    Advance(*q, Add(head, size));
    out[0] = from;
    out[1] = rtag;
    return Napi::Number::New(env, length);
  }
}

// The call itself: `into` a typed array of the caller's.
Napi::Value RecvInto(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  uint8_t* into = nullptr;
  size_t room = 0;
  if (!BytesOf(env, info[1], &into, &room)) return env.Undefined();
  const size_t given = static_cast<size_t>(info[2].As<Napi::Number>().Int64Value());
  if (given > room) return ThrowCode(env, "ERR_MPRUN_ARG", "queueRecvInto: more room than the array has");
  size_t outs = 0;
  int32_t* out = Int32s(info[8], &outs);
  if (out == nullptr || outs < 2) return ThrowCode(env, "ERR_MPRUN_ARG", "queueRecvInto: out must be an Int32Array of 2");
  return Take(env, Of(info), into, given, info[3].As<Napi::Number>().Int32Value(), info[4].As<Napi::Number>().Int32Value(), info[5].As<Napi::Number>().Int32Value(), BudgetNs(info[6].As<Napi::Number>().DoubleValue()), BudgetNs(info[7].As<Napi::Number>().DoubleValue()), out);
}

// recvStaged() (bound to its queues by queueOpen): as queueRecvInto, into the staging array
// with room args[0], of type args[1] from source args[2] with tag args[3], polling for
// args[4] ns and then sleeping for up to args[5] ns; the source and tag into `out`.
Napi::Value RecvStaged(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  Queues* q = static_cast<Queues*>(info.Data());
  const int32_t* a = q->args;
  if (a[0] < 0 || static_cast<size_t>(a[0]) > q->stageBytes) return ThrowCode(env, "ERR_MPRUN_ARG", "recvStaged: more room than the staging array has");
  return Take(env, q, q->stage, static_cast<size_t>(a[0]), a[1], a[2], a[3], BudgetNs(a[4]), BudgetNs(a[5]), q->out);
}

}  // namespace

void InitQueue(Napi::Env env, Napi::Object exports) {
  exports.Set("queueOpen", Napi::Function::New(env, Open));
  exports.Set("queueWorldRanks", Napi::Function::New(env, WorldRanks));
  exports.Set("queueSendEager", Napi::Function::New(env, SendEager));
  exports.Set("queueRecvInto", Napi::Function::New(env, RecvInto));
}

}  // namespace mprun
