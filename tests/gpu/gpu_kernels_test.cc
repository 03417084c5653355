// The CUDA kernels against the CPU kernels, bit for bit but for NaN payloads (same_values.h):
// random bit patterns (NaN, Inf,
// subnormals and signed zeros all appear), every dtype x op, avg's premultiplied sums and scaling,
// integer division, lengths around the 16-byte vector width, and pointers offset from alignment
// (the same offset on all three: vector body after a scalar head; different offsets: scalar).
// Skipped, and said so, when this machine has no GPU.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu_reduce.h"
#include "kernels/cuda_kernels.h"
#include "kernels/dtype.h"
#include "tests/gpu/have_gpu.h"
#include "tests/gpu/same_values.h"

namespace lockstep {
namespace {

#define CUDA_OK(call) ASSERT_EQ((call), cudaSuccess) << #call << ": " << cudaGetErrorString(cudaGetLastError())

// A device buffer with room for an offset of up to 15 bytes on either side.
struct DeviceBuffer {
  void* p = nullptr;
  explicit DeviceBuffer(size_t bytes) {
    if (cudaMalloc(&p, bytes + 64) != cudaSuccess) p = nullptr;
  }
  ~DeviceBuffer() { cudaFree(p); }
  char* at(size_t off) const { return static_cast<char*>(p) + off; }
};

std::vector<unsigned char> randomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<unsigned char> v(n);
  for (auto& b : v) b = static_cast<unsigned char>(rng());
  return v;
}

const size_t kLengths[] = {0, 1, 7, 8, 15, 16, 17, 31, 33, 255, 256, 257, 4099, 1 << 20};

enum class Kind { kReduce, kPremul, kScale, kDivide };

void compareOne(lockstepDataType_t type, int op, Kind kind, size_t n, size_t offA, size_t offB, size_t offD) {
  const size_t elem = dataTypeSize(type), bytes = n * elem;
  auto a = randomBytes(bytes, static_cast<uint32_t>(type * 131 + n + offA)),
       b = randomBytes(bytes, static_cast<uint32_t>(type * 7 + n * 3 + offB));
  std::vector<unsigned char> want(bytes), got(bytes);
  DeviceBuffer da(bytes), db(bytes), dd(bytes);
  ASSERT_TRUE(da.p && db.p && dd.p);
  CUDA_OK(cudaMemcpy(da.at(offA), a.data(), bytes, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(db.at(offB), b.data(), bytes, cudaMemcpyHostToDevice));
  const int nranks = 3;
  switch (kind) {
    case Kind::kReduce:
      reduceFn(type, static_cast<lockstepRedOp_t>(op))(want.data(), a.data(), b.data(), n);
      CUDA_OK(cuda::reduce(type, static_cast<lockstepRedOp_t>(op), dd.at(offD), da.at(offA), db.at(offB), n, 0));
      break;
    case Kind::kPremul:
      premulSumFn(type)(want.data(), a.data(), b.data(), n, nranks);
      CUDA_OK(cuda::premulSum(type, dd.at(offD), da.at(offA), db.at(offB), n, nranks, 0));
      break;
    case Kind::kScale:
      scaleFn(type)(want.data(), a.data(), n, nranks);
      CUDA_OK(cuda::scale(type, dd.at(offD), da.at(offA), n, nranks, 0));
      break;
    case Kind::kDivide:
      want = a;
      divideFn(type)(want.data(), n, nranks);
      CUDA_OK(cudaMemcpy(dd.at(offD), a.data(), bytes, cudaMemcpyHostToDevice));
      CUDA_OK(cuda::divide(type, dd.at(offD), n, nranks, 0));
      break;
  }
  CUDA_OK(cudaDeviceSynchronize());
  CUDA_OK(cudaMemcpy(got.data(), dd.at(offD), bytes, cudaMemcpyDeviceToHost));
  std::string where;
  ASSERT_TRUE(testing::sameValues(type, want.data(), got.data(), bytes, &where))
      << where << ": " << dataTypeName(type) << " op " << op << " kind " << static_cast<int>(kind) << " n=" << n
      << " offsets " << offA << "/" << offB << "/" << offD;
}

TEST(GpuKernels, MatchTheCpuKernelsBitForBit) {
  SKIP_WITHOUT_GPU();
  for (int t = 0; t < lockstepNumTypes; ++t) {
    const auto type = static_cast<lockstepDataType_t>(t);
    const size_t e = dataTypeSize(type);
    for (size_t n : kLengths) {
      // Same offset on all three (vector body), and different offsets (scalar path).
      for (auto [oa, ob, od] : {std::tuple<size_t, size_t, size_t>{0, 0, 0}, {e, e, e}, {0, e, 2 * e}}) {
        for (int op = 0; op < 4; ++op) compareOne(type, op, Kind::kReduce, n, oa, ob, od);
        if (premulSumFn(type)) {
          compareOne(type, 0, Kind::kPremul, n, oa, ob, od);
          compareOne(type, 0, Kind::kScale, n, oa, ob, od);
        } else {
          compareOne(type, 0, Kind::kDivide, n, oa, ob, od);
        }
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST(GpuKernels, CopyMovesEveryByteAndNothingElse) {
  SKIP_WITHOUT_GPU();
  for (size_t n : {size_t{0}, size_t{1}, size_t{17}, size_t{4096 + 5}, size_t{1} << 20}) {
    for (size_t off : {0, 3, 16}) {
      auto src = randomBytes(n, static_cast<uint32_t>(n + off));
      DeviceBuffer ds(n), dd(n);
      ASSERT_TRUE(ds.p && dd.p);
      CUDA_OK(cudaMemset(dd.p, 0xee, n + 64));
      CUDA_OK(cudaMemcpy(ds.at(off), src.data(), n, cudaMemcpyHostToDevice));
      CUDA_OK(cuda::copy(dd.at(off + 1), ds.at(off), n, 0));
      std::vector<unsigned char> got(n + 64);
      CUDA_OK(cudaMemcpy(got.data(), dd.p, n + 64, cudaMemcpyDeviceToHost));
      ASSERT_EQ(std::memcmp(got.data() + off + 1, src.data(), n), 0) << "n=" << n << " off=" << off;
      for (size_t i = 0; i < off + 1; ++i) ASSERT_EQ(got[i], 0xee) << "wrote before the destination";
      for (size_t i = off + 1 + n; i < n + 64; ++i) ASSERT_EQ(got[i], 0xee) << "wrote past the destination";
    }
  }
}

TEST(GpuKernels, RejectMisalignedElements) {
  SKIP_WITHOUT_GPU();
  DeviceBuffer d(64);
  ASSERT_TRUE(d.p);
  EXPECT_EQ(cuda::reduce(lockstepFloat32, lockstepSum, d.at(1), d.at(1), d.at(1), 4, 0), cudaErrorMisalignedAddress);
  EXPECT_EQ(cuda::premulSum(lockstepInt32, d.at(0), d.at(0), d.at(0), 4, 2, 0), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace lockstep
