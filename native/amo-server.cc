// One-sided operations served by a native thread of the node agent: atomics
// on shared variables and on the node's ranks' heaps, gets and puts of those
// heaps (native/amo-client.cc is the rank's side; transports/dsm/amo.ts drives both).
// Why native: served by the agent's JavaScript, each operation cost two event-loop turns at the
// agent and two at the rank, about 30 us of the agent's CPU, so 2 to 4 ranks saturated it
// (shared fetchAdd at a third of Redis INCR from 4 clients). Here the agent's thread is an epoll
// loop over small fixed frames, as Redis is; the rank uses plain system calls, no event loop.
//
// Wire (little-endian), after the client's hello {u32 kHelloMagic, u32 n, n
// bytes of the job secret}, checked in constant time before anything else is
// read (a wrong or malformed hello closes that connection, as one that has not
// come whole within the auth timeout):
//   request 32 bytes: u32 target (variable id, or kHeapTarget | world rank),
//     u8 op (amo.h Op), u8 dtype (core/codec DTYPE_CTORS index + 1), u16 0,
//     u64 byte offset, 8 bytes operand a (a get's or put's length), 8 bytes
//     operand b (bigint types: int64; others: float64, as transports/dsm/atomic.ts)
//   a put's bytes follow its request; it has no reply (a flush reports it)
//   reply 16 bytes: u32 status (amo.h Status), u32 0, 8 bytes the old value
//     (same encoding) or a get's length, a get's bytes after it
// The memory is what the agent's JavaScript and the node's ranks map too: the
// atomics are the hardware's, atomic with respect to theirs, and a change to a
// variable bumps its page's version as VarMemory.bump does.
#include "amo-server.h"
#include "words.h"
#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <unistd.h>

namespace mprun::amo {
namespace {

constexpr uint64_t kListenKey = ~0ull;
constexpr uint64_t kWakeKey = ~0ull - 1;
constexpr uint64_t kAuthTimerKey = ~0ull - 2;

uint32_t Serve(Server* s, const uint8_t* q, uint8_t* old) {
  uint32_t id;
  uint64_t offset;
  memcpy(&id, q, 4);
  uint8_t op = q[4], dtype = q[5];
  memcpy(&offset, q + 8, 8);
  size_t size = ElementSize(dtype);
  if (size == 0 || op < kFetchAdd || op > kSet || q[6] != 0 || q[7] != 0) return kBadOperation;
  std::lock_guard<std::mutex> g(s->lock);
  if (id & kHeapTarget) {
    auto h = s->heaps.find(id & ~kHeapTarget);
    if (h == s->heaps.end()) return kNotServed;
    const Heap& m = h->second;
    if (offset % size != 0 || offset >= m.bytes || m.bytes - offset < size) return kOutside;
    if (!Apply(op, dtype, m.base + offset, q + 16, q + 24, old)) return kBadOperation;
    words::RingDoor(m.sleeping, m.door, m.wake);
    return kOk;
  }
  auto v = s->vars.find(id);
  if (v == s->vars.end()) return kNoVariable;
  const Variable& m = v->second;
  if (offset % size != 0 || offset >= m.bytes || m.bytes - offset < size) return kOutside;
  uint64_t page = offset / kPageBytes;
  if (page >= m.pages || page % s->nnodes != s->nodeIndex) return kNotHomed;
  if (!Apply(op, dtype, m.data + offset, q + 16, q + 24, old)) return kBadOperation;
  if (op != kFetch) __atomic_fetch_add(reinterpret_cast<uint32_t*>(m.versions) + page, 1u, __ATOMIC_SEQ_CST);
  return kOk;
}

// The heap range a get or put names (operand a: its length): its heap and first byte, or why not.
uint32_t HeapRange(Server* s, const uint8_t* q, const Heap** heap, uint8_t** at, uint64_t* length) {
  uint32_t id;
  uint64_t offset;
  memcpy(&id, q, 4);
  memcpy(&offset, q + 8, 8);
  memcpy(length, q + 16, 8);
  if (!(id & kHeapTarget) || q[5] != 0 || q[6] != 0 || q[7] != 0) return kBadOperation;
  std::lock_guard<std::mutex> g(s->lock);
  auto h = s->heaps.find(id & ~kHeapTarget);  // entries stay where they are: the pointer outlives the lock
  if (h == s->heaps.end()) return kNotServed;
  if (offset > h->second.bytes || h->second.bytes - offset < *length) return kOutside;
  *heap = &h->second;
  *at = h->second.base + offset;
  return kOk;
}

// A get: its status, and on success its bytes to send after the reply header (c.tail).
uint32_t ServeGet(Server* s, const uint8_t* q, Connection& c) {
  const Heap* heap;
  uint8_t* at;
  uint64_t length;
  uint32_t status = HeapRange(s, q, &heap, &at, &length);
  if (status == kOk) {
    c.tail = at;
    c.tailLen = length;
  }
  return status;
}

// A put's header: where its bytes go (c.putTo/putLeft), or why not (then they are dropped).
void StartPut(Server* s, const uint8_t* q, Connection& c) {
  const Heap* heap = nullptr;
  uint8_t* at = nullptr;
  uint64_t length = 0;
  uint32_t status = HeapRange(s, q, &heap, &at, &length);
  c.putLeft = length;
  c.putTo = status == kOk ? at : nullptr;
  c.putHeap = status == kOk ? heap : nullptr;
  if (status != kOk && c.putFailure == kOk) c.putFailure = status;
}

// Takes n bytes of the put in progress (landed at c.putTo already when `from` is null).
void TakePut(Connection& c, const uint8_t* from, size_t n) {
  if (c.putTo != nullptr) {
    if (from != nullptr) memcpy(c.putTo, from, n);
    c.putTo += n;
  }
  c.putLeft -= n;
  if (c.putLeft == 0 && c.putHeap != nullptr) words::RingDoorAfterStores(c.putHeap->sleeping, c.putHeap->door, c.putHeap->wake);
}

void Drop(Server* s, int fd) {
  epoll_ctl(s->epollFd, EPOLL_CTL_DEL, fd, nullptr);
  close(fd);
  s->conns.erase(fd);
}

// Sends what is queued (replies, then a get's bytes, in one sendmsg); false when the
// connection is to be dropped.
bool Flush(Server* s, int fd, Connection& c) {
  size_t sent = 0;
  while (sent < c.out.size() || c.tailLen > 0) {
    iovec iov[2];
    int n = 0;
    if (sent < c.out.size()) iov[n++] = {c.out.data() + sent, c.out.size() - sent};
    if (c.tailLen > 0) iov[n++] = {const_cast<uint8_t*>(c.tail), c.tailLen};
    msghdr m{};
    m.msg_iov = iov;
    m.msg_iovlen = size_t(n);
    ssize_t k = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k > 0) {
      size_t fromOut = std::min(size_t(k), c.out.size() - sent);
      sent += fromOut;
      c.tail += size_t(k) - fromOut;
      c.tailLen -= size_t(k) - fromOut;
      continue;
    }
    if (k < 0 && errno == EINTR) continue;
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return false;
  }
  c.out.erase(c.out.begin(), c.out.begin() + long(sent));
  if (c.tailLen == 0) c.tail = nullptr;
  bool pending = !c.out.empty() || c.tailLen > 0;
  // epoll_ctl only when that changes: one system call less per request in the common case.
  if (pending != c.watchingOut) {
    c.watchingOut = pending;
    epoll_event ev{};
    ev.events = c.watchingOut ? uint32_t(EPOLLIN | EPOLLOUT) : uint32_t(EPOLLIN);
    ev.data.u64 = uint64_t(fd);
    epoll_ctl(s->epollFd, EPOLL_CTL_MOD, fd, &ev);
  }
  return c.out.size() <= kMaxOut;
}

// Consumes the complete frames of c.in; false when the connection is to be dropped.
bool Consume(Server* s, Connection& c) {
  size_t at = 0;
  if (!c.authenticated) {
    if (c.in.size() < 8) return true;
    uint32_t magic, n;
    memcpy(&magic, c.in.data(), 4);
    memcpy(&n, c.in.data() + 4, 4);
    if (magic != kHelloMagic || n > kMaxSecret) return false;
    if (c.in.size() < 8 + n) return true;
    // Constant time in the secret's bytes: no early exit on the first difference.
    uint8_t diff = n == s->secret.size() ? 0 : 1;
    for (uint32_t i = 0; i < n; i++) diff |= uint8_t(c.in[8 + i] ^ uint8_t(s->secret[i % (s->secret.empty() ? 1 : s->secret.size())]));
    if (diff != 0) return false;
    c.authenticated = true;
    at = 8 + n;
  }
  while (c.tailLen == 0) {
    if (c.putLeft > 0) {
      size_t k = std::min(c.putLeft, c.in.size() - at);
      if (k == 0) break;
      TakePut(c, c.in.data() + at, k);
      at += k;
      continue;
    }
    if (c.in.size() - at < kRequest) break;
    const uint8_t* q = c.in.data() + at;
    at += kRequest;
    if (q[4] == kPut) {
      StartPut(s, q, c);
      continue;
    }
    uint8_t reply[kReply] = {};
    uint32_t status;
    if (q[4] == kFlush) {
      status = c.putFailure;
      c.putFailure = kOk;
    } else if (q[4] == kGet) {
      status = ServeGet(s, q, c);
      if (status == kOk) memcpy(reply + 8, q + 16, 8);  // the length, as asked
    } else {
      status = Serve(s, q, reply + 8);
    }
    memcpy(reply, &status, 4);
    c.out.insert(c.out.end(), reply, reply + kReply);
  }
  c.in.erase(c.in.begin(), c.in.begin() + long(at));
  return c.in.size() <= kMaxOut;
}

// Serves what c.in holds and sends the replies, as far as the socket takes them; false
// when the connection is to be dropped.
bool Pump(Server* s, int fd, Connection& c) {
  for (;;) {
    size_t before = c.in.size();
    if (!Consume(s, c) || !Flush(s, fd, c)) return false;
    // Nothing consumed (a hello still arriving, longer than a request) waits for more bytes: a
    // loop here spun for ever, starving every connection (anyone could, before the secret).
    if (c.tailLen > 0 || !c.out.empty() || c.in.size() < kRequest || c.in.size() == before) return true;
  }
}

// Arms the auth timer to ring in `ns` (at least 1 ns: 0 would disarm it).
void ArmAuthTimer(Server* s, uint64_t ns) {
  itimerspec t{};
  ns = std::max<uint64_t>(ns, 1);
  t.it_value.tv_sec = time_t(ns / 1000000000ull);
  t.it_value.tv_nsec = long(ns % 1000000000ull);
  timerfd_settime(s->authTimerFd, 0, &t, nullptr);
  s->authTimerArmed = true;
}

// Drops the connections whose hello is overdue: one that never authenticates holds a
// descriptor and its buffer for ever otherwise (the controller's rule, core/wire.ts).
void DropOverdue(Server* s) {
  uint64_t fired;
  [[maybe_unused]] ssize_t r = read(s->authTimerFd, &fired, sizeof fired);
  s->authTimerArmed = false;
  const uint64_t now = words::NowNs();
  uint64_t next = UINT64_MAX;
  std::vector<int> overdue;
  for (const auto& [fd, c] : s->conns) {
    if (c.authenticated) continue;
    uint64_t due = c.acceptedNs + s->authTimeoutNs;
    if (due <= now) overdue.push_back(fd);
    else next = std::min(next, due - now);
  }
  for (int fd : overdue) Drop(s, fd);
  if (next != UINT64_MAX) ArmAuthTimer(s, next);
}

void Loop(Server* s) {
  epoll_event evs[64];
  uint8_t buf[64 * 1024];
  uint64_t lastEvent = 0;
  while (!s->stop.load(std::memory_order_acquire)) {
    int k = WaitEvents(s->epollFd, evs, 64, s->spinNs, &lastEvent);
    if (k < 0 && errno != EINTR) return;
    for (int i = 0; i < k; i++) {
      uint64_t key = evs[i].data.u64;
      if (key == kWakeKey) continue;
      if (key == kAuthTimerKey) {
        DropOverdue(s);
        continue;
      }
      if (key == kListenKey) {
        for (;;) {
          int fd = accept4(s->listenFd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          int one = 1;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data.u64 = uint64_t(fd);
          epoll_ctl(s->epollFd, EPOLL_CTL_ADD, fd, &ev);
          Connection c;
          c.acceptedNs = words::NowNs();
          s->conns.emplace(fd, std::move(c));
          if (!s->authTimerArmed) ArmAuthTimer(s, s->authTimeoutNs);
        }
        continue;
      }
      int fd = int(key);
      auto it = s->conns.find(fd);
      if (it == s->conns.end()) continue;
      Connection& c = it->second;
      bool keep = true;
      if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (;;) {
          // A put in progress with nothing else buffered: its bytes straight into the heap.
          bool direct = c.putLeft > 0 && c.putTo != nullptr && c.in.empty();
          ssize_t n = direct ? recv(fd, c.putTo, c.putLeft, MSG_DONTWAIT) : recv(fd, buf, sizeof buf, MSG_DONTWAIT);
          if (n > 0 && direct) {
            TakePut(c, nullptr, size_t(n));
            continue;
          }
          if (n > 0) {
            c.in.insert(c.in.end(), buf, buf + n);
            // Served as it comes, so that a put's header is seen before its bytes pile up here.
            if (!Consume(s, c)) {
              keep = false;
              break;
            }
            if (size_t(n) < sizeof buf && c.putLeft == 0) break;
            continue;
          }
          if (n < 0 && errno == EINTR) continue;
          if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
          keep = false;  // closed by the client, or failed
          break;
        }
      }
      if (keep) keep = Pump(s, fd, c);
      if (!keep) Drop(s, fd);
    }
  }
}


}  // namespace

const char* StartServer(Server* s, const std::string& host, uint16_t* port, int* err, std::string* detail) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
  int gai = getaddrinfo(host.c_str(), "0", &hints, &res);
  if (gai != 0) {
    *err = 0;
    *detail = gai_strerror(gai);
    return "getaddrinfo";
  }
  const char* failed = nullptr;
  // The first call that fails, with its errno taken before anything else can change it.
  auto check = [&](bool ok, const char* call) {
    if (failed == nullptr && !ok) {
      failed = call;
      *err = errno;
    }
  };
  s->listenFd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  check(s->listenFd >= 0, "socket");
  if (failed == nullptr) check(bind(s->listenFd, res->ai_addr, res->ai_addrlen) == 0, "bind");
  freeaddrinfo(res);
  if (failed == nullptr) check(listen(s->listenFd, 128) == 0, "listen");
  sockaddr_storage a{};
  socklen_t alen = sizeof a;
  if (failed == nullptr) check(getsockname(s->listenFd, reinterpret_cast<sockaddr*>(&a), &alen) == 0, "getsockname");
  if (failed == nullptr) check((s->epollFd = epoll_create1(EPOLL_CLOEXEC)) >= 0, "epoll_create1");
  if (failed == nullptr) check((s->wakeFd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) >= 0, "eventfd");
  if (failed == nullptr) check((s->authTimerFd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) >= 0, "timerfd_create");
  if (failed != nullptr) {
    for (int fd : {s->listenFd, s->epollFd, s->wakeFd, s->authTimerFd}) if (fd >= 0) close(fd);
    return failed;
  }
  *port = ntohs(a.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&a)->sin6_port : reinterpret_cast<sockaddr_in*>(&a)->sin_port);
  epoll_event ev{};
  ev.events = EPOLLIN;
  for (auto [fd, key] : {std::pair{s->listenFd, kListenKey}, {s->wakeFd, kWakeKey}, {s->authTimerFd, kAuthTimerKey}}) {
    ev.data.u64 = key;
    epoll_ctl(s->epollFd, EPOLL_CTL_ADD, fd, &ev);
  }
  s->thread = std::thread(Loop, s);
  return nullptr;
}

void StopServer(Server* s) {
  s->stop.store(true, std::memory_order_release);
  uint64_t one = 1;
  [[maybe_unused]] ssize_t w = write(s->wakeFd, &one, sizeof one);  // cannot fail: one write per stop
  if (s->thread.joinable()) s->thread.join();
  for (auto& [fd, c] : s->conns) close(fd);
  s->conns.clear();
  close(s->listenFd);
  close(s->epollFd);
  close(s->wakeFd);
  close(s->authTimerFd);
}

}  // namespace mprun::amo
