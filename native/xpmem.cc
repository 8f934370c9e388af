// Kernel XPMEM: the ioctls on /dev/xpmem, issued directly against the ABI of
// include/xpmem_internal.h (no libxpmem needed). Used only when the device
// exists; the structs are checked against the sizes the kernel expects.
#include "common.h"
#include <cerrno>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mprun {
namespace {

using xpmem_segid_t = int64_t;
using xpmem_apid_t = int64_t;

struct xpmem_cmd_make {
  uint64_t vaddr;
  size_t size;
  int permit_type;
  uint64_t permit_value;
  xpmem_segid_t segid;
};
struct xpmem_cmd_remove {
  xpmem_segid_t segid;
};
struct xpmem_cmd_get {
  xpmem_segid_t segid;
  int flags;
  int permit_type;
  uint64_t permit_value;
  xpmem_apid_t apid;
};
struct xpmem_cmd_release {
  xpmem_apid_t apid;
};
struct xpmem_cmd_attach {
  xpmem_apid_t apid;
  off_t offset;
  size_t size;
  uint64_t vaddr;
  int fd;
  int flags;
};
struct xpmem_cmd_detach {
  uint64_t vaddr;
};
static_assert(sizeof(xpmem_cmd_make) == 40, "xpmem make ABI");
static_assert(sizeof(xpmem_cmd_get) == 32, "xpmem get ABI");
static_assert(sizeof(xpmem_cmd_attach) == 40, "xpmem attach ABI");

constexpr unsigned long kVersion = _IO('x', 0);
constexpr unsigned long kMake = _IO('x', 1);
constexpr unsigned long kRemove = _IO('x', 2);
constexpr unsigned long kGet = _IO('x', 3);
constexpr unsigned long kRelease = _IO('x', 4);
constexpr unsigned long kAttach = _IO('x', 5);
constexpr unsigned long kDetach = _IO('x', 6);
constexpr int kPermitMode = 0x1;
constexpr int kErrnoNoProc = 2004;  // XPMEM_ERRNO_NOPROC: fd inherited across fork
const char* kDevice = "/dev/xpmem";

int deviceFd = -1;

// Opens the device lazily, only if it is a character device (libxpmem's rule).
int Device() {
  if (deviceFd >= 0) return deviceFd;
  struct stat st;
  if (stat(kDevice, &st) != 0) return -1;
  if (!S_ISCHR(st.st_mode)) {
    errno = ENODEV;
    return -1;
  }
  deviceFd = open(kDevice, O_RDWR | O_CLOEXEC);
  return deviceFd;
}

long Ioctl(unsigned long cmd, void* arg) {
  int fd = Device();
  if (fd < 0) return -1;
  long r = ioctl(fd, cmd, arg);
  if (r == -1 && errno == kErrnoNoProc) {
    close(deviceFd);
    deviceFd = -1;
    if ((fd = Device()) < 0) return -1;
    r = ioctl(fd, cmd, arg);
  }
  return r;
}

Napi::Value Fail(Napi::Env env, const char* what) { return ThrowErrno(env, "ERR_MPRUN_XPMEM", errno, what); }

// probe() -> { available, reason, version }: never throws.
Napi::Value Probe(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto out = Napi::Object::New(env);
  int fd = Device();
  if (fd < 0) {
    out.Set("available", false);
    out.Set("reason", std::string(kDevice) + ": " + ErrnoName(errno));
    return out;
  }
  long v = ioctl(fd, kVersion, nullptr);
  out.Set("available", v >= 0);
  if (v < 0) out.Set("reason", std::string("XPMEM_CMD_VERSION: ") + ErrnoName(errno));
  else out.Set("version", Napi::Number::New(env, static_cast<double>(v)));
  return out;
}

Napi::Value Make(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  uint64_t addr, size;
  if (!U64Of(env, info[0], &addr) || !U64Of(env, info[1], &size)) return env.Undefined();
  xpmem_cmd_make cmd{addr, size, kPermitMode, static_cast<uint64_t>(info[2].As<Napi::Number>().Uint32Value()), 0};
  if (Ioctl(kMake, &cmd) == -1) return Fail(env, "XPMEM_CMD_MAKE");
  return Napi::BigInt::New(env, cmd.segid);
}

Napi::Value Remove(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  bool lossless;
  xpmem_cmd_remove cmd{info[0].As<Napi::BigInt>().Int64Value(&lossless)};
  if (Ioctl(kRemove, &cmd) == -1) return Fail(env, "XPMEM_CMD_REMOVE");
  return env.Undefined();
}

Napi::Value Get(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  bool lossless;
  xpmem_cmd_get cmd{info[0].As<Napi::BigInt>().Int64Value(&lossless), info[1].As<Napi::Number>().Int32Value(), kPermitMode, 0, 0};
  if (Ioctl(kGet, &cmd) == -1) return Fail(env, "XPMEM_CMD_GET");
  return Napi::BigInt::New(env, cmd.apid);
}

Napi::Value ReleaseApid(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  bool lossless;
  xpmem_cmd_release cmd{info[0].As<Napi::BigInt>().Int64Value(&lossless)};
  if (Ioctl(kRelease, &cmd) == -1) return Fail(env, "XPMEM_CMD_RELEASE");
  return env.Undefined();
}

void KernelDetach(void* addr, size_t, void*) {
  xpmem_cmd_detach cmd{static_cast<uint64_t>(reinterpret_cast<uintptr_t>(addr))};
  Ioctl(kDetach, &cmd);
}

Napi::Value Attach(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  bool lossless;
  uint64_t offset, size;
  if (!U64Of(env, info[1], &offset) || !U64Of(env, info[2], &size)) return env.Undefined();
  xpmem_cmd_attach cmd{info[0].As<Napi::BigInt>().Int64Value(&lossless), static_cast<off_t>(offset), size, 0, 0, 0};
  if (Ioctl(kAttach, &cmd) == -1) return Fail(env, "XPMEM_CMD_ATTACH");
  return WrapMapping(env, reinterpret_cast<void*>(cmd.vaddr), size, KernelDetach, nullptr);
}

}  // namespace

void InitXpmem(Napi::Env env, Napi::Object exports) {
  auto x = Napi::Object::New(env);
  x.Set("probe", Napi::Function::New(env, Probe));
  x.Set("make", Napi::Function::New(env, Make));
  x.Set("remove", Napi::Function::New(env, Remove));
  x.Set("get", Napi::Function::New(env, Get));
  x.Set("release", Napi::Function::New(env, ReleaseApid));
  x.Set("attach", Napi::Function::New(env, Attach));
  exports.Set("xpmem", x);
}

}  // namespace mprun
