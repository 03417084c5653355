// The floating-point environment every host reduction runs in: round to nearest, denormals kept
// (no flush-to-zero, no denormals-are-zero), exceptions masked. The calling thread's own may be
// anything (torch.set_flush_denormal, fesetround), and a blocking call runs on the caller's thread
// or on the progress thread depending on timing: ranks that each compute the whole result
// (recursive doubling, direct) then held different bits, also in deterministic mode. The
// thread's environment is put back on the way out.
#pragma once

#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#else
#include <cfenv>
#endif

namespace lockstep {

class DefaultFloatEnv {
 public:
#if defined(__x86_64__) || defined(__i386__)
  // MXCSR: exception masks set, round to nearest, FTZ and DAZ clear. The status flags (the low six
  // bits) are ignored: ordinary arithmetic sets them, and they change no result. One read on the
  // usual path.
  static constexpr uint32_t kDefault = 0x1F80, kFlags = 0x3F;
  DefaultFloatEnv() : saved_(_mm_getcsr()), changed_((saved_ & ~kFlags) != kDefault) {
    if (changed_) _mm_setcsr(kDefault);
  }
  ~DefaultFloatEnv() {
    if (changed_) _mm_setcsr(saved_);
  }
#elif defined(__aarch64__)
  // FPCR: round to nearest, no flush-to-zero (FZ, FZ16), no default NaN, traps off: all zero.
  DefaultFloatEnv() : saved_(__builtin_aarch64_get_fpcr()), changed_(saved_ != 0) {
    if (changed_) __builtin_aarch64_set_fpcr(0);
  }
  ~DefaultFloatEnv() {
    if (changed_) __builtin_aarch64_set_fpcr(static_cast<unsigned>(saved_));
  }
#else
  // Elsewhere the rounding mode, which C covers portably.
  DefaultFloatEnv() : saved_(static_cast<uint64_t>(std::fegetround())), changed_(saved_ != FE_TONEAREST) {
    if (changed_) std::fesetround(FE_TONEAREST);
  }
  ~DefaultFloatEnv() {
    if (changed_) std::fesetround(static_cast<int>(saved_));
  }
#endif
  DefaultFloatEnv(const DefaultFloatEnv&) = delete;
  DefaultFloatEnv& operator=(const DefaultFloatEnv&) = delete;

 private:
  uint64_t saved_;
  bool changed_;
};

// Round-to-nearest in the x87 control word, where DefaultFloatEnv leaves it: fesetround sets it
// beside MXCSR, and glibc's strtod and printf round by it. The configuration's figures are
// parsed and printed under this (the summary every rank compares at init): ranks rounding
// upward read LOCKSTEP_LINK_GBPS=0.3 as 0.30000000000000004 and failed "configuration differs".
// Not on the call path, which uses SSE only: the control word is read where text is.
class NearestX87Rounding {
 public:
#if defined(__x86_64__) || defined(__i386__)
  NearestX87Rounding() {
    asm volatile("fnstcw %0" : "=m"(saved_));
    if (saved_ & kRounding) {
      const uint16_t nearest = saved_ & ~kRounding;
      asm volatile("fldcw %0" : : "m"(nearest));
    }
  }
  ~NearestX87Rounding() {
    if (saved_ & kRounding) asm volatile("fldcw %0" : : "m"(saved_));
  }
#else
  NearestX87Rounding() = default;  // no x87: DefaultFloatEnv's register is the C library's too
#endif
  NearestX87Rounding(const NearestX87Rounding&) = delete;
  NearestX87Rounding& operator=(const NearestX87Rounding&) = delete;

#if defined(__x86_64__) || defined(__i386__)
 private:
  static constexpr uint16_t kRounding = 0xC00;
  uint16_t saved_ = 0;
#endif
};

}  // namespace lockstep
