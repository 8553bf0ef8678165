// CPU weighted gather-average: output rows in parallel; each row walks the profile columns in panels of
// kPanel and, per panel, adds its k weighted source rows in order into two float64 accumulators that stay
// in L1 (2 x 8 KiB), while the next source row's panel is prefetched (the rows are scattered, so the
// hardware prefetcher would restart at each one). The inputs are read in place, as float32; nothing of size
// m x p is allocated.
//
// Each term is rounded like scipy's CSR @ float64 product (y += w * x, then for the second moment
// x2 = sd*sd + mu*mu first; the library is built with -ffp-contract=off, so no FMA merges the steps), and
// the order over j is fixed, so results do not depend on threads or on the instruction set (AVX-512, AVX2
// or baseline x86-64: topk_isa()'s choice, capped by SCPROSPATIAL_TOPK_ISA; only the vector width differs).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "gather.h"
#include "parallel.h"
#include "topk.h"  // topk_isa

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SCP_X86 1
#endif
#if defined(__GNUC__) || defined(__clang__)
#define SCP_INLINE inline __attribute__((always_inline))
#define SCP_PREFETCH(p) __builtin_prefetch(p)
#else
#define SCP_INLINE inline
#define SCP_PREFETCH(p) ((void)0)
#endif

namespace scp {

namespace {

constexpr int64_t kPanel = 1024;  // columns per accumulator panel (8 KiB of float64 each)
constexpr int64_t kLine = 16;     // floats per 64-byte cache line

struct Args {
  const int64_t* idx;
  int k;
  const float* mean;
  const float* sd;
  int64_t p;
  float* out_mean;
  float* out_var;
  bool out_sd;
};

// a1 += w mu, a2 += w (sd^2 + mu^2) (or w mu^2 without sd) over pc columns; prefetches pm/ps meanwhile.
template <bool kSd, bool kVar>
SCP_INLINE void add_row(double wj, const float* mu, const float* s, int64_t pc, double* a1, double* a2,
                        const float* pm, const float* ps) {
  int64_t c = 0;
  for (; c <= pc; c += kLine) {
    const int64_t end = std::min(pc, c + kLine);
    SCP_PREFETCH(pm + c);
    if (kSd) SCP_PREFETCH(ps + c);
    if (end - c == kLine) {  // fixed trip count: vectorised
      for (int64_t u = c; u < c + kLine; ++u) {
        const double x = mu[u];
        a1[u] += wj * x;
        if (kVar) a2[u] += wj * (kSd ? static_cast<double>(s[u]) * static_cast<double>(s[u]) + x * x : x * x);
      }
    } else {
      for (int64_t u = c; u < end; ++u) {
        const double x = mu[u];
        a1[u] += wj * x;
        if (kVar) a2[u] += wj * (kSd ? static_cast<double>(s[u]) * static_cast<double>(s[u]) + x * x : x * x);
      }
    }
  }
}

template <class W, bool kSd, bool kVar>
SCP_INLINE void rows_body(const Args& a, const W* w, int64_t lo, int64_t hi) {
  const int64_t p = a.p;
  const int k = a.k;
  std::vector<double> acc1(static_cast<size_t>(std::min(p, kPanel))), acc2(kVar ? acc1.size() : 0);
  double* a1 = acc1.data();
  double* a2 = acc2.data();
  for (int64_t i = lo; i < hi; ++i) {
    const int64_t* row_idx = a.idx + i * k;
    const W* row_w = w + i * k;
    for (int64_t c0 = 0; c0 < p; c0 += kPanel) {
      const int64_t pc = std::min(kPanel, p - c0);
      std::fill(a1, a1 + pc, 0.0);
      if (kVar) std::fill(a2, a2 + pc, 0.0);
      for (int j = 0; j < k; ++j) {
        // what comes next: this panel of the next source row, the next panel's first, or the next row's first
        int64_t nr = row_idx[j], nc = c0;
        if (j + 1 < k) {
          nr = row_idx[j + 1];
        } else if (c0 + kPanel < p) {
          nr = row_idx[0], nc = c0 + kPanel;
        } else if (i + 1 < hi) {
          nr = row_idx[k], nc = 0;
        }
        const int64_t at = row_idx[j] * p + c0, next = nr * p + nc;
        add_row<kSd, kVar>(static_cast<double>(row_w[j]), a.mean + at, kSd ? a.sd + at : nullptr, pc, a1, a2,
                           a.mean + next, kSd ? a.sd + next : nullptr);
      }
      float* om = a.out_mean + i * p + c0;
      for (int64_t c = 0; c < pc; ++c) om[c] = static_cast<float>(a1[c]);
      if (kVar) {
        float* ov = a.out_var + i * p + c0;
        for (int64_t c = 0; c < pc; ++c) {
          double v = a2[c] - a1[c] * a1[c];
          v = v < 0.0 ? 0.0 : v;  // NaN stays NaN (as numpy's maximum)
          ov[c] = static_cast<float>(a.out_sd ? std::sqrt(v) : v);
        }
      }
    }
  }
}

template <class W, bool kSd, bool kVar>
void rows_portable(const Args& a, const W* w, int64_t lo, int64_t hi) {
  rows_body<W, kSd, kVar>(a, w, lo, hi);
}

#ifdef SCP_X86
template <class W, bool kSd, bool kVar>
__attribute__((target("avx2"))) void rows_avx2(const Args& a, const W* w, int64_t lo, int64_t hi) {
  rows_body<W, kSd, kVar>(a, w, lo, hi);
}

template <class W, bool kSd, bool kVar>
__attribute__((target("avx512f"))) void rows_avx512(const Args& a, const W* w, int64_t lo, int64_t hi) {
  rows_body<W, kSd, kVar>(a, w, lo, hi);
}
#endif

template <class W, bool kSd, bool kVar>
using RowsFn = void (*)(const Args&, const W*, int64_t, int64_t);

template <class W, bool kSd, bool kVar>
RowsFn<W, kSd, kVar> pick(const std::string& isa) {
#ifdef SCP_X86
  if (isa == "avx512") return rows_avx512<W, kSd, kVar>;
  if (isa == "avx2") return rows_avx2<W, kSd, kVar>;
#endif
  (void)isa;
  return rows_portable<W, kSd, kVar>;
}

}  // namespace

template <class W>
void gather_rows_cpu(const int64_t* idx, const W* w, int64_t n, int k, const float* mean, const float* sd,
                     int64_t p, int threads, float* out_mean, float* out_var, bool out_sd) {
  if (n == 0 || p == 0) return;
  const Args a{idx, k, mean, sd, p, out_mean, out_var, out_sd};
  const std::string isa = topk_isa();
  const RowsFn<W, false, false> means_only = pick<W, false, false>(isa);
  const RowsFn<W, true, true> with_sd = pick<W, true, true>(isa);
  const RowsFn<W, false, true> spread_only = pick<W, false, true>(isa);
  // Chunks of about 256 KiB of gathered input each, so threads stay balanced without contention on the counter.
  const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, p * k));
  parallel_for(0, n, chunk, threads, [&](int64_t lo, int64_t hi) {
    if (out_var == nullptr) {
      means_only(a, w, lo, hi);
    } else if (sd != nullptr) {
      with_sd(a, w, lo, hi);
    } else {
      spread_only(a, w, lo, hi);
    }
  });
}

template void gather_rows_cpu<float>(const int64_t*, const float*, int64_t, int, const float*, const float*, int64_t,
                                     int, float*, float*, bool);
template void gather_rows_cpu<double>(const int64_t*, const double*, int64_t, int, const float*, const float*,
                                      int64_t, int, float*, float*, bool);

}  // namespace scp
