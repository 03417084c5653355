// One rank's share of "every collective on device buffers, back to back on one stream", for the
// stand-in driver's tests of both device paths (stream_order_test.cc: staged; ipc_stream_test.cc:
// cuda_ipc): all-reduce out of place (big: many slices) and in place, an integer average,
// reduce-scatter, all-gather in place, broadcast, reduce, all-to-all, a grouped send/recv ring
// and a barrier, checked once the stream has run. Returns "" or what went wrong.
#pragma once

#include <string>

#include "lockstep/lockstep.h"
#include "tests/fakecuda/fake_cuda.h"

namespace lockstep {

inline std::string everyCollectiveOnDevice(const FakeCuda& cuda, lockstepComm_t c, int r, int n) {
  constexpr size_t kCount = 1000, kBig = 1 << 18;
  void* s = cuda.streamCreate();
  DeviceArray<float> a(cuda, kBig), b(cuda, kBig), rsIn(cuda, n * kCount), rsOut(cuda, kCount), ag(cuda, n * kCount),
      bc(cuda, kCount), red(cuda, kCount), redOut(cuda, kCount), a2aIn(cuda, n * kCount), a2aOut(cuda, n * kCount),
      ringIn(cuda, kCount), ringOut(cuda, kCount);
  DeviceArray<int32_t> avg(cuda, kCount);
  for (size_t i = 0; i < kBig; ++i) a[i] = float(r + 1) * float(i % 97);
  for (size_t i = 0; i < kCount; ++i) {
    ag[r * kCount + i] = float(r * 1000 + i);
    bc[i] = r == 1 ? float(i) * 0.5f : -1.0f;
    red[i] = float(r + i);
    ringIn[i] = float(r * 7 + i);
    ringOut[i] = -1.0f;
    avg[i] = int32_t(3 * r + i);
  }
  for (size_t i = 0; i < n * kCount; ++i) {
    rsIn[i] = float(r + 1) * float(i);
    a2aIn[i] = float(r * 100000 + i);
  }
  std::string error;
  auto ok = [&](lockstepResult_t rc, const char* what) {
    if (rc != lockstepSuccess && error.empty()) error = std::string(what) + ": " + lockstepGetLastError(nullptr);
  };
  ok(lockstepAllReduce(a.p, b.p, kBig, lockstepFloat32, lockstepSum, c, s), "allreduce");
  ok(lockstepAllReduce(a.p, a.p, kBig, lockstepFloat32, lockstepMax, c, s), "allreduce in place");
  ok(lockstepAllReduce(avg.p, avg.p, kCount, lockstepInt32, lockstepAvg, c, s), "allreduce avg");
  ok(lockstepReduceScatter(rsIn.p, rsOut.p, kCount, lockstepFloat32, lockstepSum, c, s), "reduce-scatter");
  ok(lockstepAllGather(ag.p + r * kCount, ag.p, kCount, lockstepFloat32, c, s), "all-gather in place");
  ok(lockstepBroadcast(bc.p, bc.p, kCount, lockstepFloat32, 1, c, s), "broadcast");
  ok(lockstepReduce(red.p, redOut.p, kCount, lockstepFloat32, lockstepSum, 2, c, s), "reduce");
  ok(lockstepAllToAll(a2aIn.p, a2aOut.p, kCount, lockstepFloat32, c, s), "all-to-all");
  ok(lockstepGroupStart(), "group start");
  ok(lockstepSend(ringIn.p, kCount, lockstepFloat32, (r + 1) % n, c, s), "send");
  ok(lockstepRecv(ringOut.p, kCount, lockstepFloat32, (r + n - 1) % n, c, s), "recv");
  ok(lockstepGroupEnd(), "group end");
  ok(lockstepBarrier(c, s), "barrier");
  if (cuda.streamSynchronizeFor(s, 30000) != 0) return "the stream never finished";
  cuda.streamDestroy(s);
  lockstepResult_t async = lockstepInternalError;
  ok(lockstepCommGetAsyncError(c, &async), "async error");
  ok(async, "the ops on the stream");
  if (!error.empty()) return error;
  const float sum = float(n * (n + 1) / 2);
  auto wrong = [&](const char* what, size_t i) { return std::string(what) + " wrong at element " + std::to_string(i); };
  for (size_t i = 0; i < kBig; ++i) {
    if (b[i] != sum * float(i % 97)) return wrong("allreduce", i);
    if (a[i] != float(n) * float(i % 97)) return wrong("allreduce in place", i);
  }
  for (size_t i = 0; i < kCount; ++i) {
    if (avg[i] != int32_t((3 * n * (n - 1) / 2 + n * i) / n)) return wrong("allreduce avg", i);
    if (rsOut[i] != sum * float(r * kCount + i)) return wrong("reduce-scatter", i);
    if (bc[i] != float(i) * 0.5f) return wrong("broadcast", i);
    if (r == 2 && redOut[i] != float(n * i + n * (n - 1) / 2)) return wrong("reduce", i);
    if (ringOut[i] != float(((r + n - 1) % n) * 7 + i)) return wrong("send/recv", i);
  }
  for (int p = 0; p < n; ++p) {
    for (size_t i = 0; i < kCount; ++i) {
      if (ag[p * kCount + i] != float(p * 1000 + i)) return wrong("all-gather", p * kCount + i);
      if (a2aOut[p * kCount + i] != float(p * 100000 + r * kCount + i)) return wrong("all-to-all", p * kCount + i);
    }
  }
  return "";
}

}  // namespace lockstep
