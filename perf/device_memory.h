// Where a perf driver's buffers live (-m host|device). For device memory the driver loads the
// CUDA driver itself (dlopen of libcuda.so.1, before the communicator is created, as a trainer
// initialises CUDA first), picks GPU LOCKSTEP_LOCAL_RANK modulo the GPU count (several ranks may
// share one GPU), and keeps host shadows of the buffers to fill and check them.
#pragma once

#include <cstddef>
#include <string>

namespace lockstep::perf {

class BenchMemory {
 public:
  // Exits with a message when device memory is asked for and no usable CUDA driver is found.
  // `localRank` picks the GPU (modulo the count); -1: LOCKSTEP_LOCAL_RANK.
  BenchMemory(bool device, size_t bytes, int localRank = -1);
  ~BenchMemory();
  BenchMemory(const BenchMemory&) = delete;
  BenchMemory& operator=(const BenchMemory&) = delete;

  bool device() const { return device_; }
  // What the collectives get (device pointers for -m device).
  char* send() const { return send_; }
  char* recv() const { return recv_; }
  // The stream the calls go on (nullptr for host memory: blocking calls).
  void* stream() const { return stream_; }
  // The host shadow of an address inside send() or recv() (the address itself for host memory).
  char* host(const void* p) const;
  // Copies the first `bytes` of both host shadows to the device buffers / back (no-ops on host).
  void upload(size_t bytes);
  void download(size_t bytes);
  // Waits until the stream has run everything posted on it (no-op on host).
  void sync();
  // "host" or "device <n> of <count>".
  std::string describe() const;

 private:
  bool device_;
  size_t bytes_;
  char *send_ = nullptr, *recv_ = nullptr;
  char *sendHost_ = nullptr, *recvHost_ = nullptr;
  void* stream_ = nullptr;
  int ordinal_ = -1, gpus_ = 0;
};

}  // namespace lockstep::perf
