// The small collectives of a team on one node, as native code: the flat
// barrier and a one-round reduction (reduce, allreduce, scan of up to a few
// KiB), speaking exactly the round protocol of runtime/coll/shm-rounds.ts
// (ack and data words in the node control segment, headers and data in each
// member's bank, a reduction's stamp in its header's line, doorbells rung for
// sleepers). Measured why (README, "Cold
// and steady"): the same steps in JavaScript cost 2-3 us per call until V8
// has compiled them, and compiling them takes the core from a peer the job
// waits for; here a call costs one Node-API crossing from the first one.
//
// Every wait spins for a budget the caller gives (MPRUN_COLL_POLL_US), then
// sleeps on the rank's doorbell for a second budget (the synchronous forms',
// when nothing else of the rank needs driving; 0 for the others), and then
// returns how far the collective got; the TypeScript engine finishes it from
// there (sleeping on the doorbell, driving the rank's progress, reporting
// hangs). Policy (when to take this path, for how long) stays in TypeScript.
#include "words.h"
#include <cstring>

namespace mprun {
namespace {

using namespace words;

// Bank header words (Int32), as in shm-rounds.ts.
constexpr int H_KIND = 0;
constexpr int H_DTYPE = 1;
constexpr int H_OP = 2;
constexpr int H_ROOT = 3;
constexpr size_t H_TOTAL_BYTE = 16;  // float64: the contribution's total bytes
constexpr size_t H_STAMP_BYTE = 24;  // int32: a reduction's 4c + 1 once its contribution is in place
constexpr size_t H_INLINE_BYTE = 32; // a reduction's contribution of up to kInlineBytes, in the header's line
constexpr size_t kInlineBytes = 32;  // shm-rounds.ts REDUCTION_INLINE_BYTES
// Wake classes, as in transports/shm/control.ts.
constexpr int32_t WAKE_SYNC = 4;
constexpr int32_t WAKE_ACK = 8;
constexpr int KIND_BCAST = 2;
constexpr int KIND_REDUCE = 7;

// reduce() results
constexpr int NOT_STARTED = 0;  // our bank was not free within the budget: nothing done
constexpr int PUBLISHED = 1;    // our contribution is published; readers wait for the others
constexpr int DONE = 2;
constexpr int MISMATCH = 3;     // published and every contribution in, but a header differs

struct CollTeam {
  int32_t* words;  // the node control segment
  int me;
  int size;
  uint32_t slots;
  size_t slotBytes;
  size_t headerBytes;
  bool yields;  // ranks outnumber cores: give the core away while spinning
  std::vector<int32_t> ack, data, sleeping, door;  // word indices per member
  std::vector<uint8_t*> bank;                      // members' scratch for this team (null until given)
  // The team's staging array (shm-rounds.ts staging()) and call arguments, kept alive
  // by the caller with the handle: small arrays pass through the one, the numbers of a
  // call through the other, so that the calls bound to this team (barrier, reduce,
  // bcast) take no argument: no typed array for Node-API to inspect, no number to
  // convert, no handle to unwrap.
  uint8_t* stage = nullptr;
  size_t stageBytes = 0;
  const double* args = nullptr;  // [round, plan, who (reduce) or root (bcast), spinNs, dozeNs, published (reduce)]
  // A round every member is known to have acked, from what this member saw: a
  // member that published round r (or acked it) has acked every round before.
  // Spares the bank-free check its loads of every member's ack line.
  bool knowsAcked = false;
  int32_t acked = 0;
};

// A wait of this member: SpinUntil for `spinNs`, then asleep on its doorbell for `wake` for up to `dozeNs`.
template <typename F>
bool Await(const CollTeam& t, F ready, uint64_t spinNs, uint64_t dozeNs, int32_t wake) {
  return WaitUntil(ready, spinNs, dozeNs, t.yields, t.words, t.sleeping[t.me], t.door[t.me], wake);
}

uint64_t DozeOf(const CollTeam& t) { return BudgetNs(t.args[4]); }

bool AllAcked(const CollTeam& t, int32_t c) {
  for (int j = 0; j < t.size; j++)
    if (!ModGE(Load(t.words + t.ack[j]), c)) return false;
  return true;
}

// Members 0..n-1 stamped round c's reduction (its slot at `at`): header and contribution in
// place. Equality, not order: a slot keeps its stamp until its next use, and a stamp is 4c + 1
// for exactly one round in 2^30.
bool AllStamped(const CollTeam& t, int n, size_t at, int32_t stamp) {
  for (int j = 0; j < n; j++)
    if (Load(reinterpret_cast<const int32_t*>(t.bank[j] + at + H_STAMP_BYTE)) != stamp) return false;
  return true;
}

void SawAcked(CollTeam& t, int32_t r) {
  if (!t.knowsAcked || ModGE(r, t.acked)) t.acked = r;
  t.knowsAcked = true;
}

// Round c's slot is free: every member acked the round that used it last.
bool BankFree(CollTeam& t, int32_t c, uint64_t budget, uint64_t doze) {
  const int32_t last = Sub(c, static_cast<int32_t>(t.slots));
  // Trusted only while recent: counters compare modulo 2^32, so a remembered round
  // 2^31 rounds old (a team on the TypeScript path that long) would pass for a new one.
  if (t.knowsAcked && ModGE(t.acked, last) && Sub(c, t.acked) >= 0 && Sub(c, t.acked) < (1 << 30)) return true;
  if (!Await(t, [&] { return AllAcked(t, last); }, budget, doze, WAKE_ACK)) return false;
  SawAcked(t, last);
  return true;
}

// ControlSegment.ring() of every other member: wakes those asleep for `wake`.
void RingOthers(CollTeam& t, int32_t wake) {
  for (int j = 0; j < t.size; j++)
    if (j != t.me) Ring(t.words, t.sleeping[j], t.door[j], wake);
}

// Our ack of round c, and a wake-up for whoever sleeps on acks. Once: a resumed barrier
// (ShmCollectives.resume calls it again for the same round) neither stores nor rings again.
void Finish(CollTeam& t, int32_t c) {
  if (Load(t.words + t.ack[t.me]) == c) return;
  Store(t.words + t.ack[t.me], c);
  RingOthers(t, WAKE_ACK);
}

size_t BankAt(const CollTeam& t, int32_t c) { return (static_cast<uint32_t>(c) % t.slots) * t.slotBytes; }

// Our slot of round c (at `at` in our bank): its header (shm-rounds.ts writeHeader) and data
// (`dataAt` bytes into the slot: after the header, or in its line for a small reduction).
void WriteSlot(CollTeam& t, size_t at, int32_t c, int32_t kind, int32_t dtype, int32_t op, int32_t root, const uint8_t* data, size_t bytes, size_t dataAt) {
  uint8_t* own = t.bank[t.me] + at;
  int32_t* h = reinterpret_cast<int32_t*>(own);
  h[H_KIND] = kind;
  h[H_DTYPE] = dtype;
  h[H_OP] = op;
  h[H_ROOT] = root;
  h[H_STAMP_BYTE / 4] = static_cast<int32_t>(static_cast<uint32_t>(c) * 4u);
  const double total = static_cast<double>(bytes);
  std::memcpy(own + H_TOTAL_BYTE, &total, sizeof total);
  std::memcpy(own + dataAt, data, bytes);
}

// Whether a member's header is round c's (its stamp 4c or 4c + 1: not a header an earlier round
// left in the slot, which a member that called another root than the others could read as its
// own) and says what this member called (op or root -2: not checked).
bool HeaderIs(const uint8_t* slot, int32_t c, int32_t kind, int32_t dtype, int32_t op, int32_t root, size_t bytes) {
  const int32_t* h = reinterpret_cast<const int32_t*>(slot);
  double total;
  std::memcpy(&total, slot + H_TOTAL_BYTE, sizeof total);
  const bool ofRound = (static_cast<uint32_t>(Load(h + H_STAMP_BYTE / 4)) & ~1u) == static_cast<uint32_t>(c) * 4u;
  return ofRound && h[H_KIND] == kind && h[H_DTYPE] == dtype && (op == -2 || h[H_OP] == op) && (root == -2 || h[H_ROOT] == root) && total == static_cast<double>(bytes);
}

CollTeam* TeamOf(const Napi::CallbackInfo& info) { return info[0].As<Napi::External<CollTeam>>().Data(); }

Napi::Value Barrier(const Napi::CallbackInfo& info);
Napi::Value Reduce(const Napi::CallbackInfo& info);
Napi::Value Bcast(const Napi::CallbackInfo& info);

// collTeam(words: Int32Array, me, ack, data, sleeping, door: Int32Array (per member),
//          slots, slotBytes, headerBytes, yields, stage: ArrayBuffer, args: Float64Array(6))
//   -> { handle, barrier, reduce, bcast }
Napi::Value Team(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  size_t nwords = 0;
  int32_t* words = Int32s(info[0], &nwords);
  if (words == nullptr) return ThrowCode(env, "ERR_MPRUN_ARG", "collTeam: words must be an Int32Array");
  auto t = new CollTeam();
  t->words = words;
  t->me = info[1].As<Napi::Number>().Int32Value();
  int size = static_cast<int>(info[2].IsTypedArray() ? info[2].As<Napi::TypedArray>().ElementLength() : 0);
  t->size = size;
  bool ok = size > 0 && t->me >= 0 && t->me < size && Indices(info[2], size, nwords, &t->ack) && Indices(info[3], size, nwords, &t->data) && Indices(info[4], size, nwords, &t->sleeping) && Indices(info[5], size, nwords, &t->door);
  t->slots = info[6].As<Napi::Number>().Uint32Value();
  t->slotBytes = static_cast<size_t>(info[7].As<Napi::Number>().Int64Value());
  t->headerBytes = static_cast<size_t>(info[8].As<Napi::Number>().Int64Value());
  t->yields = info[9].ToBoolean().Value();
  if (info[10].IsArrayBuffer()) {
    auto ab = info[10].As<Napi::ArrayBuffer>();
    t->stage = static_cast<uint8_t*>(ab.Data());
    t->stageBytes = ab.ByteLength();
  }
  if (info[11].IsTypedArray() && info[11].As<Napi::TypedArray>().TypedArrayType() == napi_float64_array && info[11].As<Napi::TypedArray>().ElementLength() >= 6) {
    t->args = info[11].As<Napi::Float64Array>().Data();
  }
  if (!ok || t->stage == nullptr || t->args == nullptr || t->slots < 2 || (t->slots & (t->slots - 1)) != 0 || t->headerBytes < 64 || t->slotBytes <= t->headerBytes) {
    delete t;
    return ThrowCode(env, "ERR_MPRUN_ARG", "collTeam: inconsistent team layout");
  }
  t->bank.assign(size, nullptr);
  // The arrays it points into are held by the caller with the handle, which each function bound to it holds too.
  auto binding = Napi::Object::New(env);
  auto handle = Napi::External<CollTeam>::New(env, t, [](Napi::Env, CollTeam* p) { delete p; });
  binding.Set("handle", handle);
  binding.Set("barrier", BoundFunction<Barrier>(env, "barrier", t, handle));
  binding.Set("reduce", BoundFunction<Reduce>(env, "reduce", t, handle));
  binding.Set("bcast", BoundFunction<Bcast>(env, "bcast", t, handle));
  return binding;
}

CollTeam* BoundTeam(const Napi::CallbackInfo& info) { return static_cast<CollTeam*>(info.Data()); }

// A round number from the arguments: an int32 (rounds count modulo 2^32; ShmRounds.next wraps them
// with `| 0`). Anything else, NaN included, reads 0 (a cast of it would be undefined): a compare, no
// fmod, on every small collective's call.
int32_t RoundArg(double v) { return v >= -2147483648.0 && v <= 2147483647.0 ? static_cast<int32_t>(v) : 0; }

// collBank(handle, j, scratch: Uint8Array) : member j's scratch for this team
// (slots x slotBytes), kept alive by the caller (shm-rounds.ts maps it for the job).
Napi::Value Bank(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  CollTeam* t = TeamOf(info);
  int j = info[1].As<Napi::Number>().Int32Value();
  uint8_t* data = nullptr;
  size_t length = 0;
  if (j < 0 || j >= t->size || !BytesOf(env, info[2], &data, &length)) return env.IsExceptionPending() ? env.Undefined() : ThrowCode(env, "ERR_MPRUN_ARG", "collBank: no such member");
  if (length < t->slots * t->slotBytes) return ThrowCode(env, "ERR_MPRUN_ARG", "collBank: scratch smaller than the team's slots");
  t->bank[j] = data;
  return env.Undefined();
}

// barrier() (bound to its team; args [c, -, -, spinNs, dozeNs]) -> whether every member reached round c. This
// member's arrival (ack = c) is stored either way.
Napi::Value Barrier(const Napi::CallbackInfo& info) {
  CollTeam* t = BoundTeam(info);
  const int32_t c = RoundArg(t->args[0]);
  const uint64_t budget = BudgetNs(t->args[3]);
  Finish(*t, c);
  if (!Await(*t, [&] { return AllAcked(*t, c); }, budget, DozeOf(*t), WAKE_ACK)) return Napi::Boolean::New(info.Env(), false);
  SawAcked(*t, c);
  return Napi::Boolean::New(info.Env(), true);
}

// The numbers a small collective's call packs its arguments into (a few doubles in the
// team's args array).
//   plan = ((bytes * 16 + kind) * 16 + dtype) * 16 + op, who = root * 2^20 + nRead
// (shm-rounds.ts collPlan and collWho). dtype is core/codec.ts's code: 1.. in napi's typed array order.
struct Plan {
  size_t bytes;
  int32_t kind, dtype, op;
  napi_typedarray_type type;
};

bool Unpack(double packed, Plan* p) {
  if (!(packed >= 0 && packed < 9007199254740992.0)) return false;
  uint64_t v = static_cast<uint64_t>(packed);
  p->op = static_cast<int32_t>(v & 15);
  p->dtype = static_cast<int32_t>((v >> 4) & 15);
  p->kind = static_cast<int32_t>((v >> 8) & 15);
  p->bytes = static_cast<size_t>(v >> 12);
  if (p->dtype < 1 || p->dtype > 11) return false;
  p->type = static_cast<napi_typedarray_type>(p->dtype - 1);
  return true;
}

// reduce() (bound to its team by collTeam; args [c, plan, who, spinNs, dozeNs, published]) -> NOT_STARTED, PUBLISHED, DONE or
// MISMATCH. One round of shm-reduce.ts's flat reduction: our contribution
// (the first `bytes` of the team's staging array) into our bank (once every
// member acked the slot's last round), then members 0..nRead-1's
// contributions folded into the staging array in rank order (nRead 0: this
// member only contributes), then ack. Every bank must have been given.
Napi::Value Reduce(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  CollTeam* t = BoundTeam(info);
  const int32_t c = RoundArg(t->args[0]);
  Plan p{};
  const bool planned = Unpack(t->args[1], &p);
  const double whoArg = t->args[2];
  const int64_t who = whoArg >= 0 && whoArg < 9007199254740992.0 ? static_cast<int64_t>(whoArg) : -1;
  const int32_t root = static_cast<int32_t>(who >> 20);
  const int nRead = static_cast<int>(who & 0xfffff);
  const uint64_t budget = BudgetNs(t->args[3]);
  const uint64_t doze = DozeOf(*t);
  if (!planned) return ThrowCode(env, "ERR_MPRUN_ARG", "a team's native reduce: not a reduction's plan");
  const int32_t kind = p.kind, dtype = p.dtype, op = p.op;
  const size_t bytes = p.bytes;
  const size_t bpe = ElementBytes(p.type);
  uint8_t* mine = t->stage;
  if (who < 0 || nRead > t->size || bytes > t->stageBytes || bytes % bpe != 0 || bytes > t->slotBytes - t->headerBytes) return ThrowCode(env, "ERR_MPRUN_ARG", "a team's native reduce: out of the team's layout");
  // Our bank (we write there) and the banks of the members we read.
  for (int j = 0; j < nRead; j++)
    if (t->bank[j] == nullptr) return ThrowCode(env, "ERR_MPRUN_ARG", "a team's native reduce: a member's bank is not mapped");
  if (t->bank[t->me] == nullptr) return ThrowCode(env, "ERR_MPRUN_ARG", "a team's native reduce: this member's bank is not mapped");

  const size_t at = BankAt(*t, c);
  const size_t dataAt = bytes <= kInlineBytes ? H_INLINE_BYTE : t->headerBytes;
  const int32_t stage1 = static_cast<int32_t>(static_cast<uint32_t>(c) * 4u + 1u);
  // Published by an earlier call of this round (ShmReductions.resume says so, and our data word
  // agrees): the slot stays as it is, readers may be folding it, and nobody is woken again.
  const bool published = t->args[5] == 1 && Load(t->words + t->data[t->me]) == stage1;
  if (!published) {
    if (!BankFree(*t, c, budget, doze)) return Napi::Number::New(env, NOT_STARTED);
    WriteSlot(*t, at, c, kind, dtype, op, root, mine, bytes, dataAt);
    // The stamp for native readers (one line: stamp, header and a small contribution), the data word for the steps'.
    Store(reinterpret_cast<int32_t*>(t->bank[t->me] + at + H_STAMP_BYTE), stage1);
    Store(t->words + t->data[t->me], stage1);
    RingOthers(*t, WAKE_SYNC);
  }

  if (nRead > 0) {
    if (!Await(*t, [&] { return AllStamped(*t, nRead, at, stage1); }, budget, doze, WAKE_SYNC)) return Napi::Number::New(env, PUBLISHED);
    if (nRead == t->size) SawAcked(*t, Sub(c, 1));
    for (int j = 0; j < nRead; j++)
      if (!HeaderIs(t->bank[j] + at, c, kind, dtype, op, kind == KIND_REDUCE ? root : -2, bytes)) return Napi::Number::New(env, MISMATCH);
    std::memcpy(mine, t->bank[0] + at + dataAt, bytes);
    const size_t n = bytes / bpe;
    for (int j = 1; j < nRead; j++) {
      if (!ReduceInto(p.type, op, mine, t->bank[j] + at + dataAt, n)) return ThrowCode(env, "ERR_MPRUN_ARG", "a team's native reduce: operator not defined on this type");
    }
  }
  Finish(*t, c);
  return Napi::Number::New(env, DONE);
}

// bcast() (bound to its team; args [c, plan, root, spinNs, dozeNs]) -> NOT_STARTED, DONE or MISMATCH
// (plan as reduce()'s, kind and op 0). One round of shm.ts's broadcast of a
// typed array through the team's staging array: the root writes header and
// data into its bank (once every member acked the slot's last round) and
// publishes; a reader waits for the root's data, checks its header against
// what it passes (kind, root, type, length) and copies the data into the
// staging array. Nothing is done when it returns NOT_STARTED or MISMATCH (the
// steps start the round over).
Napi::Value Bcast(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  CollTeam* t = BoundTeam(info);
  const int32_t c = RoundArg(t->args[0]);
  Plan p{};
  const bool planned = Unpack(t->args[1], &p);
  const double rootArg = t->args[2];
  const int32_t root = rootArg >= 0 && rootArg < t->size ? static_cast<int32_t>(rootArg) : -1;
  const uint64_t budget = BudgetNs(t->args[3]);
  const uint64_t doze = DozeOf(*t);
  if (!planned) return ThrowCode(env, "ERR_MPRUN_ARG", "a team's native bcast: not a broadcast's plan");
  const int32_t dtype = p.dtype;
  const size_t bytes = p.bytes;
  uint8_t* mine = t->stage;
  if (root < 0 || root >= t->size || bytes > t->stageBytes || bytes > t->slotBytes - t->headerBytes) return ThrowCode(env, "ERR_MPRUN_ARG", "a team's native bcast: out of the team's layout");
  const size_t at = BankAt(*t, c);
  const int32_t stage1 = static_cast<int32_t>(static_cast<uint32_t>(c) * 4u + 1u);
  if (t->me == root) {
    if (t->bank[root] == nullptr) return ThrowCode(env, "ERR_MPRUN_ARG", "a team's native bcast: the root's bank is not mapped");
    if (!BankFree(*t, c, budget, doze)) return Napi::Number::New(env, NOT_STARTED);
    WriteSlot(*t, at, c, KIND_BCAST, dtype, 0, root, mine, bytes, t->headerBytes);
    Store(t->words + t->data[root], stage1);
    RingOthers(*t, WAKE_SYNC);
  } else {
    if (t->bank[root] == nullptr) return ThrowCode(env, "ERR_MPRUN_ARG", "a team's native bcast: the root's bank is not mapped");
    if (!Await(*t, [&] { return ModGE(Load(t->words + t->data[root]), stage1); }, budget, doze, WAKE_SYNC)) return Napi::Number::New(env, NOT_STARTED);
    const uint8_t* b = t->bank[root] + at;
    if (!HeaderIs(b, c, KIND_BCAST, dtype, -2, root, bytes)) return Napi::Number::New(env, MISMATCH);
    std::memcpy(mine, b + t->headerBytes, bytes);
  }
  Finish(*t, c);
  return Napi::Number::New(env, DONE);
}

}  // namespace

void InitColl(Napi::Env env, Napi::Object exports) {
  exports.Set("collTeam", Napi::Function::New(env, Team));
  exports.Set("collBank", Napi::Function::New(env, Bank));
}

}  // namespace mprun
