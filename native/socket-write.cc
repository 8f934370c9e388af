// Writes to a non-blocking socket without exceptions for a full one: a rank's
// link to a node agent writes its frames to the descriptor itself (see
// transports/dsm/client.ts), and with fs.writeSync every attempt on a full
// socket threw EAGAIN as an Error with a stack: sending 64 MiB across nodes,
// half of the sending rank's CPU went into building those errors. The frames'
// parts go as one writev, so a message's payload is never copied into a frame.
#include "common.h"
#include <algorithm>
#include <cerrno>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <vector>

namespace mprun {
namespace {

constexpr uint32_t kMaxChunks = 64;

// socketWrite(fd, chunks: Uint8Array[]) -> bytes the kernel took (0: none now, the socket
// is full). Other failures throw ERR_MPRUN_SYSTEM naming the errno.
Napi::Value SocketWrite(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsArray()) return ThrowCode(env, "ERR_MPRUN_ARG", "socketWrite(fd, chunks: Uint8Array[])");
  const int fd = info[0].As<Napi::Number>().Int32Value();
  auto chunks = info[1].As<Napi::Array>();
  // At most kMaxChunks a call: a backlog of many small frames is written over several
  // calls (the kernel rarely takes more at once) rather than inspected whole each time.
  const uint32_t n = std::min<uint32_t>(chunks.Length(), kMaxChunks);
  std::vector<iovec> iov;
  iov.reserve(n);
  for (uint32_t i = 0; i < n; i++) {
    Napi::Value c = chunks.Get(i);
    uint8_t* data = nullptr;
    size_t length = 0;
    if (!BytesOf(env, c, &data, &length)) return env.Undefined();
    if (length > 0) iov.push_back({data, length});
  }
  if (iov.empty()) return Napi::Number::New(env, 0);
  ssize_t r;
  do r = writev(fd, iov.data(), static_cast<int>(iov.size()));
  while (r < 0 && errno == EINTR);
  if (r >= 0) return Napi::Number::New(env, static_cast<double>(r));
  if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, 0);
  return ThrowErrno(env, "ERR_MPRUN_SYSTEM", errno, "writev to a socket");
}

// tcpDeadPeer(fd, seconds): a peer host that vanishes (a crash, a cut link: no FIN, no RST) ends
// the connection with ETIMEDOUT within about `seconds`, idle (keepalive probes from a third of
// it) or with data unacknowledged (TCP_USER_TIMEOUT). One bound for both: with a user timeout
// set, Linux ends a keepalive on it rather than on the probes' count. It counts a window held at
// zero too, so a slow but living peer needs room. Without it, a reply that never comes was
// waited for for ever. Throws ERR_MPRUN_SYSTEM when a setsockopt fails.
Napi::Value TcpDeadPeer(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsNumber()) return ThrowCode(env, "ERR_MPRUN_ARG", "tcpDeadPeer(fd, seconds)");
  const int fd = info[0].As<Napi::Number>().Int32Value();
  const int seconds = std::min(std::max(3, info[1].As<Napi::Number>().Int32Value()), 3600);
  const int on = 1, idle = seconds / 3, count = 10, interval = std::max(1, (seconds - idle) / count);
  const unsigned timeoutMs = unsigned(seconds) * 1000u;
  if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) != 0 || setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) != 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval) != 0 || setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count) != 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeoutMs, sizeof timeoutMs) != 0)
    return ThrowErrno(env, "ERR_MPRUN_SYSTEM", errno, "setsockopt (keepalive) on a socket");
  return env.Undefined();
}

}  // namespace

void InitSocketWrite(Napi::Env env, Napi::Object exports) {
  exports.Set("socketWrite", Napi::Function::New(env, SocketWrite));
  exports.Set("tcpDeadPeer", Napi::Function::New(env, TcpDeadPeer));
}

}  // namespace mprun
