// Moran's I on the CPU: one pass over the rows of the graph and of the (cells x features) values.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "parallel.h"
#include "stats.h"

namespace scp {

void moran_sums(const int64_t* indptr, const int64_t* indices, int64_t n, const double* x, int64_t p,
                const double* mean, bool sorted_rows, int threads, double* num, double* den, double* s) {
  const int64_t nnz = indptr[n];
  for (int64_t k = 0; k < nnz; ++k) {
    if (indices[k] < 0 || indices[k] >= n) {
      throw std::out_of_range("column index " + std::to_string(indices[k]) + " is outside [0, " + std::to_string(n) +
                              ")");
    }
  }
  auto deg = [&](int64_t i) { return indptr[i + 1] - indptr[i]; };
  auto has_edge = [&](int64_t from, int64_t to) {
    const int64_t* lo = indices + indptr[from];
    const int64_t* hi = indices + indptr[from + 1];
    return sorted_rows ? std::binary_search(lo, hi, to) : std::find(lo, hi, to) != hi;
  };
  // column sums of w (for S2), accumulated serially in index order: exact order, no races
  std::vector<double> colsum(n, 0.0);
  for (int64_t i = 0; i < n; ++i) {
    if (deg(i) == 0) continue;
    const double w = 1.0 / static_cast<double>(deg(i));
    for (int64_t k = indptr[i]; k < indptr[i + 1]; ++k) colsum[indices[k]] += w;
  }
  constexpr int64_t kBlock = 2048;  // rows per block: partial sums per block, added in block order
  const int64_t n_blocks = (n + kBlock - 1) / kBlock;
  const int64_t width = 2 * p + 3;  // num (p), den (p), S0, S1, S2
  std::vector<double> part(n_blocks * width, 0.0);
  parallel_for(0, n_blocks, 1, threads, [&](int64_t b0, int64_t b1) {
    std::vector<double> acc(p), zi(p);
    for (int64_t b = b0; b < b1; ++b) {
      double* out = part.data() + b * width;
      for (int64_t i = b * kBlock; i < std::min(n, (b + 1) * kBlock); ++i) {
        const int64_t d = deg(i);
        const double rowsum = d > 0 ? 1.0 : 0.0;
        out[2 * p + 2] += (rowsum + colsum[i]) * (rowsum + colsum[i]);
        const double* xi = x + i * p;
        for (int64_t f = 0; f < p; ++f) {
          zi[f] = xi[f] - mean[f];
          out[p + f] += zi[f] * zi[f];
        }
        if (d == 0) continue;
        const double w = 1.0 / static_cast<double>(d);
        out[2 * p] += 1.0;
        out[2 * p + 1] += w;  // sum_j w_ij^2 = deg * (1/deg)^2
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t k = indptr[i]; k < indptr[i + 1]; ++k) {
          const int64_t j = indices[k];
          const double* xj = x + j * p;
          for (int64_t f = 0; f < p; ++f) acc[f] += xj[f] - mean[f];
          if (has_edge(j, i)) out[2 * p + 1] += w / static_cast<double>(deg(j));  // w_ij w_ji
        }
        for (int64_t f = 0; f < p; ++f) out[f] += zi[f] * (acc[f] * w);
      }
    }
  });
  std::vector<double> total(width, 0.0);
  for (int64_t b = 0; b < n_blocks; ++b) {
    for (int64_t c = 0; c < width; ++c) total[c] += part[b * width + c];
  }
  for (int64_t f = 0; f < p; ++f) {
    num[f] = total[f];
    den[f] = total[p + f];
  }
  s[0] = total[2 * p];
  s[1] = total[2 * p + 1];
  s[2] = total[2 * p + 2];
}

}  // namespace scp
