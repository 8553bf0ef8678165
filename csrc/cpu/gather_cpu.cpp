// CPU weighted gather-average: output rows in parallel; each row walks the profile columns in panels of
// kPanel and, per panel, adds its k weighted source rows in order into two float64 accumulators that stay
// in L1 (2 x 8 KiB). The inputs are read in place, as float32; nothing of size m x p is allocated.
//
// Each term is rounded like scipy's CSR @ float64 product (y += w * x, then for the second moment
// x2 = sd*sd + mu*mu first; the library is built with -ffp-contract=off, so no FMA merges the steps), and
// the order over j is fixed, so results do not depend on threads or vector width.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "gather.h"
#include "parallel.h"

namespace scp {

namespace {

constexpr int64_t kPanel = 1024;  // columns per accumulator panel (8 KiB of float64 each)

template <class W, bool kSd, bool kVar>
void rows_kernel(const int64_t* idx, const W* w, int64_t lo, int64_t hi, int k, const float* mean, const float* sd,
                 int64_t p, float* out_mean, float* out_var, bool out_sd) {
  std::vector<double> acc1(static_cast<size_t>(std::min(p, kPanel))), acc2(kVar ? acc1.size() : 0);
  double* a1 = acc1.data();
  double* a2 = acc2.data();
  for (int64_t i = lo; i < hi; ++i) {
    const int64_t* row_idx = idx + i * k;
    const W* row_w = w + i * k;
    for (int64_t c0 = 0; c0 < p; c0 += kPanel) {
      const int64_t pc = std::min(kPanel, p - c0);
      std::fill(a1, a1 + pc, 0.0);
      if (kVar) std::fill(a2, a2 + pc, 0.0);
      for (int j = 0; j < k; ++j) {
        const double wj = static_cast<double>(row_w[j]);
        const float* mu = mean + row_idx[j] * p + c0;
        if (!kVar) {
          for (int64_t c = 0; c < pc; ++c) a1[c] += wj * static_cast<double>(mu[c]);
        } else if (kSd) {
          const float* s = sd + row_idx[j] * p + c0;
          for (int64_t c = 0; c < pc; ++c) {
            const double x = mu[c], v = s[c];
            a1[c] += wj * x;
            a2[c] += wj * (v * v + x * x);
          }
        } else {
          for (int64_t c = 0; c < pc; ++c) {
            const double x = mu[c];
            a1[c] += wj * x;
            a2[c] += wj * (x * x);
          }
        }
      }
      float* om = out_mean + i * p + c0;
      for (int64_t c = 0; c < pc; ++c) om[c] = static_cast<float>(a1[c]);
      if (kVar) {
        float* ov = out_var + i * p + c0;
        for (int64_t c = 0; c < pc; ++c) {
          double v = a2[c] - a1[c] * a1[c];
          v = v < 0.0 ? 0.0 : v;  // NaN stays NaN (as numpy's maximum)
          ov[c] = static_cast<float>(out_sd ? std::sqrt(v) : v);
        }
      }
    }
  }
}

}  // namespace

template <class W>
void gather_rows_cpu(const int64_t* idx, const W* w, int64_t n, int k, const float* mean, const float* sd,
                     int64_t p, int threads, float* out_mean, float* out_var, bool out_sd) {
  if (n == 0 || p == 0) return;
  // Chunks of about 256 KiB of gathered input each, so threads stay balanced without contention on the counter.
  const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, p * k));
  parallel_for(0, n, chunk, threads, [&](int64_t lo, int64_t hi) {
    if (out_var == nullptr) {
      rows_kernel<W, false, false>(idx, w, lo, hi, k, mean, sd, p, out_mean, out_var, out_sd);
    } else if (sd != nullptr) {
      rows_kernel<W, true, true>(idx, w, lo, hi, k, mean, sd, p, out_mean, out_var, out_sd);
    } else {
      rows_kernel<W, false, true>(idx, w, lo, hi, k, mean, sd, p, out_mean, out_var, out_sd);
    }
  });
}

template void gather_rows_cpu<float>(const int64_t*, const float*, int64_t, int, const float*, const float*, int64_t,
                                     int, float*, float*, bool);
template void gather_rows_cpu<double>(const int64_t*, const double*, int64_t, int, const float*, const float*,
                                      int64_t, int, float*, float*, bool);

}  // namespace scp
