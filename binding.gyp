{
  "targets": [
    {
      "target_name": "mprun_native",
      "sources": ["native/addon.cc", "native/errors.cc", "native/shm.cc", "native/cma.cc", "native/futex.cc", "native/door-watch.cc", "native/socket-write.cc", "native/xpmem.cc", "native/process.cc", "native/reduce.cc", "native/coll.cc", "native/queue.cc", "native/pmem.cc", "native/lane.cc", "native/pmix.cc", "native/pmix-lib.cc", "native/ucx.cc", "native/ucx-lib.cc", "native/ucx-inbox.cc", "native/ucx-put.cc", "native/ucx-ops.cc", "native/amo-server.cc", "native/amo-bind.cc", "native/amo-apply.cc", "native/amo-client.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "/usr/lib/<!(gcc -print-multiarch 2>/dev/null || echo none)/pmix2/include"],
      "defines": ["NAPI_VERSION=9", "NAPI_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags_cc": ["-std=c++20", "-O3", "-fvisibility=hidden", "-Wall", "-Wextra"],
      "libraries": ["-ldl"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++1y"]
    }
  ]
}
