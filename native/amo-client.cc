// A rank's side of the shared-variable atomics (native/amo-server.cc has the
// why and the wire): one blocking TCP connection per home node, a request
// written with one send() and its reply read with a blocking recv() while the rank
// waits, so neither the rank's event loop nor the agent's is in the path.
#include "amo.h"
#include "words.h"
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <string>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <unordered_map>
#include <vector>

namespace mprun::amo {
namespace {

// A connection's request in flight and its reply so far: a request may outlast one wait (then the next reads on).
struct Pending {
  bool inFlight = false;
  uint8_t dtype = 0;
  size_t got = 0;
  uint8_t reply[kReply];
  // A get's destination (the caller keeps it alive until the reply is read) and how much has landed.
  uint8_t* into = nullptr;
  size_t intoLen = 0;
  size_t intoGot = 0;
  uint64_t spinNs = 0;  // how long a wait for a reply polls before recv() blocks (amo.h WaitEvents says why)
};
std::unordered_map<int, Pending> pending;  // by descriptor, from connect to close

bool WriteAll(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= size_t(k);
  }
  return true;
}

// Writes a then b as one stream, in as few system calls as the socket allows (one for a
// small put: its header and bytes in one segment).
bool WriteBoth(int fd, const uint8_t* a, size_t alen, const uint8_t* b, size_t blen) {
  while (alen + blen > 0) {
    iovec iov[2] = {{const_cast<uint8_t*>(a), alen}, {const_cast<uint8_t*>(b), blen}};
    msghdr m{};
    m.msg_iov = alen > 0 ? iov : iov + 1;
    m.msg_iovlen = alen > 0 ? 2 : 1;
    ssize_t k = sendmsg(fd, &m, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    size_t fromA = std::min(size_t(k), alen);
    a += fromA;
    alen -= fromA;
    b += size_t(k) - fromA;
    blen -= size_t(k) - fromA;
  }
  return true;
}

// amoConnect(host, port, secret, timeoutMs, waitMs, spinUs): a connected descriptor that has
// sent the hello. A wait for a reply polls for spinUs, then lasts waitMs (SO_RCVTIMEO: the
// wait is the recv() itself, one system call, where a poll() and a recv() were two).
Napi::Value AmoConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string host = info[0].As<Napi::String>().Utf8Value();
  std::string port = std::to_string(info[1].As<Napi::Number>().Uint32Value());
  std::string secret = info[2].As<Napi::String>().Utf8Value();
  int timeoutMs = info[3].As<Napi::Number>().Int32Value();
  int waitMs = info[4].As<Napi::Number>().Int32Value();
  if (secret.size() > kMaxSecret) return ThrowCode(env, "ERR_MPRUN_ARG", "amoConnect: the secret is too long");
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST;
  int gai = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  if (gai != 0) return ThrowCode(env, "ERR_MPRUN_ARG", "amoConnect: bad address " + host + ": " + gai_strerror(gai));
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int err = fd < 0 ? errno : 0;
  if (err == 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
    err = errno;
    if (err == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int k = poll(&p, 1, timeoutMs);
      socklen_t len = sizeof err;
      if (k == 0) err = ETIMEDOUT;
      else if (k < 0) err = errno;
      else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    }
  }
  freeaddrinfo(res);
  if (err == 0) {
    // Blocking from here: a request is one send, its reply one recv() bounded by SO_RCVTIMEO.
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval wait{waitMs / 1000, (waitMs % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
    std::vector<uint8_t> hello(8 + secret.size());
    uint32_t n = uint32_t(secret.size());
    memcpy(hello.data(), &kHelloMagic, 4);
    memcpy(hello.data() + 4, &n, 4);
    memcpy(hello.data() + 8, secret.data(), n);
    if (!WriteAll(fd, hello.data(), hello.size())) err = errno != 0 ? errno : EPIPE;
  }
  if (err != 0) {
    if (fd >= 0) close(fd);
    return ThrowErrno(env, "ERR_MPRUN_UNREACHABLE", err, "connect", host + ":" + port);
  }
  pending[fd] = Pending{};
  pending[fd].spinNs = words::BudgetNs(info[5].As<Napi::Number>().DoubleValue() * 1000);
  return Napi::Number::New(env, fd);
}

// The reply's old value: a bigint for the 64-bit integer types, else a number.
Napi::Value OldValue(Napi::Env env, uint8_t dtype, const uint8_t* p) {
  if (dtype == kI64) {
    int64_t v;
    memcpy(&v, p, 8);
    return Napi::BigInt::New(env, v);
  }
  if (dtype == kU64) {
    uint64_t v;
    memcpy(&v, p, 8);
    return Napi::BigInt::New(env, v);
  }
  return Napi::Number::New(env, OperandNumber(p));
}

// Receives into [at + *got, at + len), polling for spinNs, then for up to the connection's
// wait: 1 all there, 0 not yet (SO_RCVTIMEO), -1 closed or failed (errno set).
int ReceiveInto(int fd, uint8_t* at, size_t len, size_t* got, uint64_t spinNs) {
  uint64_t spinUntil = 0;
  bool spin = spinNs > 0;
  while (*got < len) {
    ssize_t n = recv(fd, at + *got, len - *got, spin ? MSG_DONTWAIT : 0);
    if (n > 0) {
      *got += size_t(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && spin) {
      if (spinUntil == 0) spinUntil = words::NowNs() + spinNs;
      else spin = words::NowNs() < spinUntil;
      sched_yield();
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (n == 0) errno = ECONNRESET;
    return -1;
  }
  return 1;
}

uint32_t StatusOf(const Pending& q) {
  uint32_t status;
  memcpy(&status, q.reply, 4);
  return status;
}

uint64_t LengthOf(const Pending& q) {
  uint64_t length;
  memcpy(&length, q.reply + 8, 8);
  return length;
}

// Receives what there is of the reply in flight for up to the connection's wait: its
// header, then a get's bytes. 1 all there, 0 not yet, -1 closed or failed (errno set),
// kWrongLength a get's reply of another length than asked.
constexpr int kWrongLength = -2;
int ReceiveReply(int fd, Pending& q) {
  int r = ReceiveInto(fd, q.reply, kReply, &q.got, q.spinNs);
  if (r != 1 || q.into == nullptr || StatusOf(q) != kOk) return r;
  if (LengthOf(q) != q.intoLen) return kWrongLength;
  return ReceiveInto(fd, q.into, q.intoLen, &q.intoGot, q.spinNs);
}

// Reads the reply of fd's request for up to the connection's wait: the old
// value (a get: true, its bytes in place), null when not there yet, undefined
// when the server does not serve that heap, or a thrown error (a refusal: `status`).
Napi::Value ReadReply(Napi::Env env, int fd) {
  auto it = pending.find(fd);
  if (it == pending.end() || !it->second.inFlight) return ThrowCode(env, "ERR_MPRUN_ARG", "amoReply: no request in flight on this connection");
  Pending& q = it->second;
  int r = ReceiveReply(fd, q);
  if (r == 0) return env.Null();
  q.inFlight = false;
  if (r == kWrongLength) return ThrowCode(env, "ERR_MPRUN_PROTOCOL", "a get's reply of " + std::to_string(LengthOf(q)) + " bytes for " + std::to_string(q.intoLen));
  if (r < 0) return ThrowErrno(env, "ERR_MPRUN_UNREACHABLE", errno, "recv", "the connection was closed");
  uint32_t status = StatusOf(q);
  if (status == kNotServed) return env.Undefined();
  if (status != kOk) {
    Napi::Error e = Napi::Error::New(env, "refused");
    e.Set("status", double(status));
    e.Set("code", "ERR_MPRUN_REFUSED");
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (q.into != nullptr) return Napi::Boolean::New(env, true);
  return OldValue(env, q.dtype, q.reply + 8);
}

// The connection fd's state (`what` names the call for the error when fd is none of amoConnect's).
Pending* PendingOf(Napi::Env env, int fd, const char* what) {
  auto it = pending.find(fd);
  if (it != pending.end()) return &it->second;
  ThrowCode(env, "ERR_MPRUN_ARG", std::string(what) + ": not a connection of amoConnect");
  return nullptr;
}

// A request frame's first fields, from the call's (fd, id, byteOffset, ...): target and offset.
void StartRequest(uint8_t* q, const Napi::CallbackInfo& info, uint8_t op) {
  uint32_t id = info[1].As<Napi::Number>().Uint32Value();
  uint64_t offset = uint64_t(info[2].As<Napi::Number>().DoubleValue());
  memcpy(q, &id, 4);
  q[4] = op;
  memcpy(q + 8, &offset, 8);
}

// Reads the whole reply of fd's request in flight, if any, keeping it for the next
// amoReply (a put or flush may not be written before it: the server answers in order,
// and a rank blocked writing while the server is blocked writing it a get's bytes is a
// deadlock). False when the connection failed (the next amoReply throws why).
bool Drain(int fd, Pending& q) {
  if (!q.inFlight) return true;
  int r;
  while ((r = ReceiveReply(fd, q)) == 0) {
  }
  return r == 1;
}

// amoPut(fd, id, byteOffset, src): writes a put of src's bytes (returns once the socket
// took them: src is reusable). No reply: amoFlush reports a refused one.
Napi::Value AmoPut(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  Pending* p = PendingOf(env, fd, "amoPut");
  if (p == nullptr) return env.Undefined();
  uint8_t* src;
  size_t len;
  if (!BytesOf(env, info[3], &src, &len)) return env.Undefined();
  if (!Drain(fd, *p)) return ThrowErrno(env, "ERR_MPRUN_UNREACHABLE", errno, "recv", "the connection was closed");
  uint8_t q[kRequest] = {};
  uint64_t length = len;
  StartRequest(q, info, kPut);
  memcpy(q + 16, &length, 8);
  if (!WriteBoth(fd, q, kRequest, src, len)) return ThrowErrno(env, "ERR_MPRUN_UNREACHABLE", errno != 0 ? errno : EPIPE, "send", "the connection was closed");
  return env.Undefined();
}

// amoFlush(fd): every put written before it applied; its status (0, or the first put
// refused since the last flush), read here with no wait for the event loop.
Napi::Value AmoFlush(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  Pending* p = PendingOf(env, fd, "amoFlush");
  if (p == nullptr) return env.Undefined();
  if (!Drain(fd, *p)) return ThrowErrno(env, "ERR_MPRUN_UNREACHABLE", errno, "recv", "the connection was closed");
  uint8_t q[kRequest] = {};
  q[4] = kFlush;
  uint8_t reply[kReply];
  size_t got = 0;
  int r = WriteAll(fd, q, kRequest) ? 0 : -1;
  while (r == 0) r = ReceiveInto(fd, reply, kReply, &got, p->spinNs);
  if (r < 0) return ThrowErrno(env, "ERR_MPRUN_UNREACHABLE", errno != 0 ? errno : EPIPE, "recv", "the connection was closed");
  uint32_t status;
  memcpy(&status, reply, 4);
  return Napi::Number::New(env, status);
}

// Sends request q on fd and waits for its reply as ReadReply; `into`: a get's destination.
Napi::Value Ask(Napi::Env env, int fd, const uint8_t* q, uint8_t* into, size_t intoLen) {
  Pending* pp = PendingOf(env, fd, "amoRequest");
  if (pp == nullptr) return env.Undefined();
  Pending& p = *pp;
  if (p.inFlight) return ThrowCode(env, "ERR_MPRUN_ARG", "amoRequest: a request is already in flight on this connection");
  if (!WriteAll(fd, q, kRequest)) return ThrowErrno(env, "ERR_MPRUN_UNREACHABLE", errno != 0 ? errno : EPIPE, "send", "the connection was closed");
  p.inFlight = true;
  p.dtype = q[5];
  p.got = 0;
  p.into = into;
  p.intoLen = intoLen;
  p.intoGot = 0;
  return ReadReply(env, fd);
}

// amoRequest(fd, id, byteOffset, op, dtype, a, b): sends the request, then as amoReply.
Napi::Value AmoRequest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  uint8_t q[kRequest] = {};
  StartRequest(q, info, uint8_t(info[3].As<Napi::Number>().Uint32Value()));
  q[5] = uint8_t(info[4].As<Napi::Number>().Uint32Value());
  for (int k = 0; k < 2; k++) {
    Napi::Value v = info[5 + k];
    if (v.IsBigInt()) {
      bool lossless;
      int64_t x = v.As<Napi::BigInt>().Int64Value(&lossless);  // two's complement of a BigUint64 too
      memcpy(q + 16 + 8 * k, &x, 8);
    } else {
      double d = v.As<Napi::Number>().DoubleValue();
      memcpy(q + 16 + 8 * k, &d, 8);
    }
  }
  return Ask(env, fd, q, nullptr, 0);
}

// amoGet(fd, id, byteOffset, dst): a heap's bytes [offset, offset + dst.byteLength) into
// dst: true when they are there, else as amoRequest (dst must stay alive until then).
Napi::Value AmoGet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* dst;
  size_t len;
  if (!BytesOf(env, info[3], &dst, &len)) return env.Undefined();
  uint8_t q[kRequest] = {};
  uint64_t length = len;
  StartRequest(q, info, kGet);
  memcpy(q + 16, &length, 8);
  return Ask(env, info[0].As<Napi::Number>().Int32Value(), q, dst, len);
}

// amoReply(fd): the old value of the request in flight, null when not there yet.
Napi::Value AmoReply(const Napi::CallbackInfo& info) {
  return ReadReply(info.Env(), info[0].As<Napi::Number>().Int32Value());
}

Napi::Value AmoClose(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  pending.erase(fd);
  close(fd);
  return info.Env().Undefined();
}

}  // namespace

void InitClient(Napi::Env env, Napi::Object amo) {
  amo.Set("connect", Napi::Function::New(env, AmoConnect));
  amo.Set("request", Napi::Function::New(env, AmoRequest));
  amo.Set("get", Napi::Function::New(env, AmoGet));
  amo.Set("put", Napi::Function::New(env, AmoPut));
  amo.Set("flush", Napi::Function::New(env, AmoFlush));
  amo.Set("reply", Napi::Function::New(env, AmoReply));
  amo.Set("close", Napi::Function::New(env, AmoClose));
}

}  // namespace mprun::amo
