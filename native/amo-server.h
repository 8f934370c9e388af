// The native thread that serves one-sided operations for a node agent: its
// state (here), its wire and loop (amo-server.cc), its Node-API functions
// (amo-bind.cc).
#pragma once
#include "amo.h"
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace mprun::amo {

constexpr size_t kPageBytes = 4096;
// A client that does not read its replies is dropped rather than buffered for.
constexpr size_t kMaxOut = 1 << 20;

struct Variable {
  uint8_t* versions;  // u32 per page
  uint8_t* data;      // the variable's bytes (the home's copy of its homed pages)
  uint64_t bytes;
  uint32_t pages;
};

// A rank of this node's symmetric heap, and its doorbell (control segment words), rung
// for WAKE_HEAP after every operation as ControlSegment.ring does (runtime/wait.ts).
struct Heap {
  uint8_t* base;
  uint64_t bytes;
  int32_t* sleeping;
  int32_t* door;
  int32_t wake;
};

struct Connection {
  bool authenticated = false;
  uint64_t acceptedNs = 0;  // when accepted: the hello is due within Server::authTimeoutNs
  std::vector<uint8_t> in;
  std::vector<uint8_t> out;
  // A get's bytes, sent straight from the heap after `out` (the heaps stay mapped
  // until the server stops); no request is read while they are being sent.
  const uint8_t* tail = nullptr;
  size_t tailLen = 0;
  // A put's bytes still to come, received straight into the heap (putTo null: a refused
  // put's, read and dropped); its heap's doorbell is rung once they are all there.
  uint8_t* putTo = nullptr;
  size_t putLeft = 0;
  const Heap* putHeap = nullptr;
  uint32_t putFailure = kOk;  // the first refused put since the last flush
  bool watchingOut = false;  // EPOLLOUT registered (replies the socket did not take yet)
};

struct Server {
  int listenFd = -1;
  int epollFd = -1;
  int wakeFd = -1;
  // Rung when the oldest connection still without its hello is due (armed only while there is one).
  int authTimerFd = -1;
  bool authTimerArmed = false;
  uint64_t authTimeoutNs = 0;
  std::string secret;
  uint32_t nodeIndex = 0;
  uint32_t nnodes = 1;
  uint64_t spinNs = 0;  // how long the thread polls after an event before it sleeps (amo.h WaitEvents)
  std::mutex lock;  // guards vars and heaps (registered by the agent's JavaScript thread)
  std::unordered_map<uint32_t, Variable> vars;
  std::unordered_map<uint32_t, Heap> heaps;  // by world rank
  std::unordered_map<int, Connection> conns;
  std::atomic<bool> stop{false};
  std::thread thread;
};

// Listens on `host` (a numeric address; the port chosen by the kernel, in *port) and starts the
// serving thread. nullptr on success; else the failed call's name, with *err its errno (0: the
// host is no address, *detail says why).
const char* StartServer(Server* s, const std::string& host, uint16_t* port, int* err, std::string* detail);
// Stops the thread and closes every descriptor of `s`.
void StopServer(Server* s);

}  // namespace mprun::amo
