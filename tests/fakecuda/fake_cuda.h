// The stand-in CUDA driver (fake_cuda_driver.c) as the tests drive it: its test-only entry
// points, loaded with RTLD_GLOBAL so Lockstep's RTLD_NOLOAD lookup finds it as libcuda.so.1, and
// "device" arrays in its memory.
#pragma once

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <type_traits>

#include "src/exec/cuda_driver.h"

namespace lockstep {

struct FakeCuda {
  void* (*malloc)(size_t);
  void (*free)(void*);
  void* (*streamCreate)();
  int (*streamSynchronize)(void*);
  int (*streamSynchronizeFor)(void*, long);  // 1 if still busy after that many ms
  void (*streamDestroy)(void*);
  int (*streamHold)(void*);
  void (*streamResume)(void*);
  int (*streamIdle)(void*);
  unsigned long long (*hostAllocs)();
  long (*hostLive)();
  void (*mark)(const void*, size_t, unsigned, unsigned);
  int (*launchHostFunc)(void*, void (*)(void*), void*);
  void (*streamFailHostFunc)(void*, int);  // the stream's n-th next cuLaunchHostFunc call fails

  static FakeCuda load() {
    void* lib = ::dlopen(LOCKSTEP_FAKE_CUDA_PATH, RTLD_NOW | RTLD_GLOBAL);
    EXPECT_NE(lib, nullptr) << ::dlerror();
    FakeCuda f{};
    auto sym = [&](const char* name, auto* fn) {
      *fn = reinterpret_cast<std::remove_pointer_t<decltype(fn)>>(::dlsym(lib, name));
      EXPECT_NE(*fn, nullptr) << name;
    };
    sym("fakeCudaMalloc", &f.malloc);
    sym("fakeCudaFree", &f.free);
    sym("fakeCudaStreamCreate", &f.streamCreate);
    sym("fakeCudaStreamSynchronize", &f.streamSynchronize);
    sym("fakeCudaStreamSynchronizeFor", &f.streamSynchronizeFor);
    sym("fakeCudaStreamDestroy", &f.streamDestroy);
    sym("fakeCudaStreamHold", &f.streamHold);
    sym("fakeCudaStreamResume", &f.streamResume);
    sym("fakeCudaStreamIdle", &f.streamIdle);
    sym("fakeCudaHostAllocs", &f.hostAllocs);
    sym("fakeCudaHostLive", &f.hostLive);
    sym("fakeCudaMark", &f.mark);
    sym("cuLaunchHostFunc", &f.launchHostFunc);
    sym("fakeCudaStreamFailHostFunc", &f.streamFailHostFunc);
    refreshCudaDriver();
    return f;
  }
};

// A "device" array of T: fake device memory, read and written by the test directly (the fake's
// device memory is host memory; Lockstep itself only reaches it through the driver's copies).
template <typename T>
struct DeviceArray {
  const FakeCuda* cuda;
  T* p;
  size_t n;
  DeviceArray(const FakeCuda& c, size_t count) : cuda(&c), p(static_cast<T*>(c.malloc(count * sizeof(T)))), n(count) {}
  ~DeviceArray() { cuda->free(p); }
  DeviceArray(const DeviceArray&) = delete;
  T& operator[](size_t i) { return p[i]; }
};

}  // namespace lockstep
