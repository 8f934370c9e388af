// The data lanes of the rpmem target daemon, each served on its own thread.
//
// The daemon's JavaScript authenticates a connection and attaches it to an
// open pool (AUTH, LANE); then it hands the socket to laneServe(), and a native
// thread serves WRITE, DRAIN and READ until the client closes it or the pool
// closes (laneStop: shutdown wakes the thread). Served in JavaScript, every
// 64 KiB chunk cost an event-loop turn and a buffer, and all lanes shared one
// core; here a lane is recv() into a buffer, a CRC32C check, pwrite() into the
// page cache (a store into the mapping on pmem), and the persist, with lanes
// running on both cores. The wire format is transports/rpmem/protocol.ts's.
//
// Durability rules are the daemon's: a write is applied only when its CRC32C
// matches; a persist is acknowledged only when pmem_persist / pmem_msync
// returned success; the first failure poisons the pool (PoisonedErrno) and
// every later request on any lane reports it.
#include "common.h"
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace mprun {

int PersistRange(uint8_t* base, uint64_t offset, uint64_t length, bool isPmem, bool deep);
uint32_t Crc32c(uint32_t crc, const uint8_t* p, size_t n);

namespace {

constexpr size_t kHeader = 32;
constexpr uint8_t kVersion = 1;
// RpmemFrame's lane types and WriteFlag's bits (transports/rpmem/protocol.ts).
constexpr uint8_t kWrite = 8, kDrain = 9, kRead = 10, kReply = 11;
constexpr uint16_t kAck = 1, kDeep = 2;
constexpr size_t kMaxPayload = 1 << 20;
constexpr uint64_t kWriteback = 2ull << 20;

struct Part {
  uint8_t* base;
  uint64_t length;
  int fd;
  bool isPmem;
};

struct Extent {
  uint64_t poolOffset;
  uint32_t part;
  uint64_t partOffset;
  uint64_t length;
};

struct Event {
  std::string kind;
  std::string message;
};

struct Lane {
  int fd;
  std::vector<uint8_t> pending;  // bytes the daemon read after the LANE frame: served first
  size_t pendingAt = 0;
  int index;
  std::string name;  // the pool set, for messages
  std::vector<Part> parts;
  std::vector<Extent> extents;
  uint64_t dataStart;
  uint64_t size;
  // The pool's state words, shared with the daemon's JavaScript (an Int32Array
  // over a SharedArrayBuffer): read and written through the accessors below.
  int32_t* state;
  Napi::ThreadSafeFunction tsfn;
  Napi::Reference<Napi::Value> keep;  // the state array and the parts' buffers
};

// The state words, at the indices of PoolState in transports/rpmem/open-pool.ts (keep the two in step).
std::atomic_ref<int32_t> StateWord(Lane* l, int index) { return std::atomic_ref<int32_t>(l->state[index]); }
// The errno that poisoned the pool (its first failed write or persist; 0: none).
std::atomic_ref<int32_t> PoisonedErrno(Lane* l) { return StateWord(l, 0); }
// Nonzero once the daemon closed the pool: the lane stops.
std::atomic_ref<int32_t> ClosedFlag(Lane* l) { return StateWord(l, 1); }
// Persists so far, over all the pool's lanes.
std::atomic_ref<int32_t> PersistCount(Lane* l) { return StateWord(l, 2); }
// The persist that fails with EIO (0: none): MPRUN_RPMEMD_FAIL_PERSIST, a test hook.
std::atomic_ref<int32_t> FailAtPersist(Lane* l) { return StateWord(l, 3); }

void Emit(Lane* l, const char* kind, const std::string& message) {
  auto* e = new Event{kind, message};
  l->tsfn.BlockingCall(e, [](Napi::Env env, Napi::Function fn, Event* ev) {
    fn.Call({Napi::String::New(env, ev->kind), Napi::String::New(env, ev->message)});
    delete ev;
  });
}

bool Wait(int fd, short events) {
  pollfd p{fd, events, 0};
  while (true) {
    int r = poll(&p, 1, -1);
    if (r > 0) return (p.revents & (POLLERR | POLLNVAL)) == 0 || (p.revents & events) != 0;
    if (r < 0 && errno != EINTR) return false;
  }
}

// The whole of n bytes, or false at the end of the stream or on an error.
bool RecvAll(Lane* l, uint8_t* p, size_t n) {
  int fd = l->fd;
  if (l->pendingAt < l->pending.size()) {
    size_t k = std::min(n, l->pending.size() - l->pendingAt);
    memcpy(p, l->pending.data() + l->pendingAt, k);
    l->pendingAt += k;
    p += k;
    n -= k;
  }
  while (n > 0) {
    ssize_t r = recv(fd, p, n, 0);
    if (r > 0) {
      p += r;
      n -= static_cast<size_t>(r);
    } else if (r == 0) {
      return false;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!Wait(fd, POLLIN)) return false;
    } else if (errno != EINTR) {
      return false;
    }
  }
  return true;
}

bool SendAll(int fd, const uint8_t* p, size_t n, int more = 0) {
  while (n > 0) {
    ssize_t r = send(fd, p, n, MSG_NOSIGNAL | more);
    if (r > 0) {
      p += r;
      n -= static_cast<size_t>(r);
    } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!Wait(fd, POLLOUT)) return false;
    } else if (r < 0 && errno == EINTR) {
      continue;
    } else {
      return false;
    }
  }
  return true;
}

uint32_t U32(const uint8_t* p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

void Header(uint8_t* h, uint8_t type, uint32_t payload, uint32_t id, int32_t arg) {
  memset(h, 0, kHeader);
  uint32_t bytes = static_cast<uint32_t>(kHeader) + payload;
  memcpy(h, &bytes, 4);
  h[4] = kVersion;
  h[5] = type;
  memcpy(h + 8, &id, 4);
  memcpy(h + 24, &payload, 4);
  memcpy(h + 28, &arg, 4);
}

bool Reply(Lane* l, uint32_t id, int err) {
  uint8_t h[kHeader];
  Header(h, kReply, 0, id, err);
  return SendAll(l->fd, h, kHeader);
}

// The pieces of [offset, offset+length) part by part.
template <typename F>
int EachExtent(Lane* l, uint64_t offset, uint64_t length, F f) {
  uint64_t end = offset + length;
  for (const auto& e : l->extents) {
    uint64_t s = std::max(offset, e.poolOffset), t = std::min(end, e.poolOffset + e.length);
    if (s >= t) continue;
    int err = f(l->parts[e.part], e.partOffset + (s - e.poolOffset), t - s, s - offset);
    if (err != 0) return err;
  }
  return 0;
}

void Poison(Lane* l, int err, const std::string& what) {
  int32_t none = 0;
  if (PoisonedErrno(l).compare_exchange_strong(none, err)) {
    Emit(l, "log", what + " (" + ErrnoName(err) + "); the pool is poisoned: every later request reports " + ErrnoName(err));
  }
}

int Persist(Lane* l, uint64_t offset, uint64_t length, bool deep) {
  int poisoned = PoisonedErrno(l).load();
  if (poisoned != 0) return poisoned;
  int n = PersistCount(l).fetch_add(1) + 1;
  int failAt = FailAtPersist(l).load();
  int err = failAt > 0 && n == failAt ? EIO : EachExtent(l, offset, length, [&](Part& p, uint64_t at, uint64_t len, uint64_t) { return PersistRange(p.base, at, len, p.isPmem, deep); });
  if (err != 0) Poison(l, err, "persist of " + std::to_string(length) + " bytes at " + std::to_string(offset) + " of " + l->name + " failed");
  return err;
}

int Apply(Lane* l, uint64_t offset, const uint8_t* src, uint64_t length) {
  return EachExtent(l, offset, length, [&](Part& p, uint64_t at, uint64_t len, uint64_t from) {
    if (p.isPmem) {
      memcpy(p.base + at, src + from, len);
      return 0;
    }
    // pwrite into the page cache: unlike a store into the mapping, no write-protect
    // fault per page that an earlier writeback left clean.
    uint64_t done = 0;
    while (done < len) {
      ssize_t r = pwrite(p.fd, src + from + done, len - done, static_cast<off_t>(at + done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return r < 0 ? errno : EIO;
      done += static_cast<uint64_t>(r);
    }
    return 0;
  });
}

void Serve(Lane* l) {
  std::vector<uint8_t> buf(kMaxPayload);
  std::vector<std::pair<uint64_t, uint64_t>> dirty;
  uint64_t sinceKick = 0;
  int laneError = 0;
  uint8_t h[kHeader];
  auto refuse = [&](const std::string& why) { Emit(l, "refused", why); };
  while (ClosedFlag(l).load() == 0 && RecvAll(l, h, kHeader)) {
    uint32_t bytes = U32(h);
    uint8_t type = h[5];
    uint16_t aux;
    memcpy(&aux, h + 6, 2);
    uint32_t id = U32(h + 8);
    uint64_t offset = static_cast<uint64_t>(U32(h + 16)) | (static_cast<uint64_t>(U32(h + 20)) << 32);
    uint32_t length = U32(h + 24);
    uint32_t crc = U32(h + 28);
    if (h[4] != kVersion) {
      refuse("rpmem frame version " + std::to_string(h[4]) + ", expected 1");
      break;
    }
    if (bytes < kHeader || bytes - kHeader > kMaxPayload) {
      refuse("rpmem frame of " + std::to_string(bytes) + " bytes is out of bounds");
      break;
    }
    uint64_t payload = bytes - kHeader;
    std::string range = " of " + std::to_string(type == kRead ? length : payload) + " bytes at " + std::to_string(offset);
    if (type == kWrite) {
      if (offset < l->dataStart || offset > l->size || payload > l->size - offset) {
        refuse("WRITE" + range + " is outside the pool's data area [" + std::to_string(l->dataStart) + ", " + std::to_string(l->size) + ")");
        break;
      }
      if (!RecvAll(l, buf.data(), payload)) break;
      bool ack = (aux & kAck) != 0, deep = (aux & kDeep) != 0;
      if (Crc32c(0, buf.data(), payload) != crc) {
        // Never applied, persisted nor acknowledged.
        Emit(l, "log", "lane " + std::to_string(l->index) + " of " + l->name + ": a " + std::to_string(payload) + "-byte write at " + std::to_string(offset) + " failed its CRC32C; not applied");
        if (laneError == 0) laneError = EBADMSG;
        if (ack && !Reply(l, id, EBADMSG)) break;
        continue;
      }
      if (PoisonedErrno(l).load() == 0) {
        int err = Apply(l, offset, buf.data(), payload);
        if (err != 0) Poison(l, err, "writing " + std::to_string(payload) + " bytes at " + std::to_string(offset) + " of " + l->name + " failed");
      }
      if (ack) {
        if (!Reply(l, id, Persist(l, offset, payload, deep))) break;
        continue;
      }
      dirty.emplace_back(offset, payload);
      sinceKick += payload;
      if (sinceKick >= kWriteback) {
        // Start the disk on what has arrived while the rest streams in; the drain's persist waits for it.
        uint64_t from = offset + payload > kWriteback ? offset + payload - kWriteback : 0;
        EachExtent(l, std::max(from, l->dataStart), offset + payload - std::max(from, l->dataStart), [](Part& p, uint64_t at, uint64_t len, uint64_t) {
          if (!p.isPmem) sync_file_range(p.fd, static_cast<off64_t>(at), static_cast<off64_t>(len), SYNC_FILE_RANGE_WRITE);
          return 0;
        });
        sinceKick = 0;
      }
    } else if (type == kDrain) {
      if (payload != 0) {
        refuse("DRAIN with a payload");
        break;
      }
      std::sort(dirty.begin(), dirty.end());
      int err = laneError;
      laneError = 0;
      for (size_t i = 0; i < dirty.size();) {
        uint64_t s = dirty[i].first, e = s + dirty[i].second;
        for (i++; i < dirty.size() && dirty[i].first <= e; i++) e = std::max(e, dirty[i].first + dirty[i].second);
        if (err == 0) err = Persist(l, s, e - s, (aux & kDeep) != 0);
      }
      dirty.clear();
      sinceKick = 0;
      if (err == 0) err = PoisonedErrno(l).load();
      if (!Reply(l, id, err)) break;
    } else if (type == kRead) {
      if (payload != 0 || length > kMaxPayload || offset < l->dataStart || offset > l->size || length > l->size - offset) {
        refuse("READ" + range + " is outside the pool's data area");
        break;
      }
      int poisoned = PoisonedErrno(l).load();
      if (poisoned != 0) {
        if (!Reply(l, id, poisoned)) break;
        continue;
      }
      // Straight from the mapped parts onto the socket.
      uint8_t rh[kHeader];
      Header(rh, kReply, length, id, 0);
      if (!SendAll(l->fd, rh, kHeader, MSG_MORE)) break;
      if (EachExtent(l, offset, length, [&](Part& p, uint64_t at, uint64_t len, uint64_t) { return SendAll(l->fd, p.base + at, len) ? 0 : EPIPE; }) != 0) break;
    } else {
      refuse("frame type " + std::to_string(type) + " on a lane");
      break;
    }
  }
  Emit(l, "end", "");
  l->tsfn.Release();
}

// laneServe(fd, received, parts, extents, dataStart, size, state, name, index, onEvent)
//   received: bytes the daemon read past the LANE frame (served before the socket's)
//   parts: [{ buffer, fd, isPmem }]; extents: Float64Array of (poolOffset, part, partOffset, length)
//   onEvent(kind, message): 'log' (a failure to log), 'refused' (a malformed frame: the lane
//   ended), 'end' (the thread is done: the socket may be closed, the parts unmapped).
Napi::Value LaneServe(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto* l = new Lane();
  l->fd = info[0].As<Napi::Number>().Int32Value();
  uint8_t* got;
  size_t gotBytes;
  if (!BytesOf(env, info[1], &got, &gotBytes)) {
    delete l;
    return env.Undefined();
  }
  l->pending.assign(got, got + gotBytes);
  auto parts = info[2].As<Napi::Array>();
  for (uint32_t i = 0; i < parts.Length(); i++) {
    auto o = parts.Get(i).As<Napi::Object>();
    auto ab = o.Get("buffer").As<Napi::ArrayBuffer>();
    l->parts.push_back({static_cast<uint8_t*>(ab.Data()), ab.ByteLength(), o.Get("fd").As<Napi::Number>().Int32Value(), o.Get("isPmem").ToBoolean()});
  }
  uint8_t* ex;
  size_t exBytes;
  if (!BytesOf(env, info[3], &ex, &exBytes)) {
    delete l;
    return env.Undefined();
  }
  const double* d = reinterpret_cast<const double*>(ex);
  for (size_t i = 0; i + 4 <= exBytes / 8; i += 4) {
    l->extents.push_back({static_cast<uint64_t>(d[i]), static_cast<uint32_t>(d[i + 1]), static_cast<uint64_t>(d[i + 2]), static_cast<uint64_t>(d[i + 3])});
  }
  l->dataStart = static_cast<uint64_t>(info[4].As<Napi::Number>().DoubleValue());
  l->size = static_cast<uint64_t>(info[5].As<Napi::Number>().DoubleValue());
  uint8_t* st;
  size_t stBytes;
  if (!BytesOf(env, info[6], &st, &stBytes) || stBytes < 16) {
    delete l;
    Napi::TypeError::New(env, "laneServe needs the pool's state (Int32Array(4) over a SharedArrayBuffer)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  l->state = reinterpret_cast<int32_t*>(st);
  l->name = info[7].As<Napi::String>();
  l->index = info[8].As<Napi::Number>().Int32Value();
  // Keep the state array and the parts alive until the thread is done (released on this thread).
  auto keep = Napi::Array::New(env, 2);
  keep.Set(0u, info[2]);
  keep.Set(1u, info[6]);
  l->keep = Napi::Persistent(static_cast<Napi::Value>(keep));
  l->tsfn = Napi::ThreadSafeFunction::New(env, info[9].As<Napi::Function>(), "mprun-rpmem-lane", 0, 1, [l](Napi::Env) {
    l->keep.Reset();
    delete l;
  });
  std::thread(Serve, l).detach();
  return env.Undefined();
}

// laneStop(fd): ends a lane's thread (its recv returns); 'end' follows.
Napi::Value LaneStop(const Napi::CallbackInfo& info) {
  shutdown(info[0].As<Napi::Number>().Int32Value(), SHUT_RDWR);
  return info.Env().Undefined();
}

}  // namespace

void InitLane(Napi::Env env, Napi::Object exports) {
  exports.Set("laneServe", Napi::Function::New(env, LaneServe));
  exports.Set("laneStop", Napi::Function::New(env, LaneStop));
}

}  // namespace mprun
