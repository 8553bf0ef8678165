// Weighted gather-average of predicted profiles (Python-free): every output row is the mixture of k
// Gaussians picked by index from the rows of a profile matrix (the mapping's transfer of predicted proteomes
// from scRNA-seq cells onto imaged cells), without densifying or copying the (m x p) profiles.
#pragma once

#include <cstdint>

#include "spatial.h"  // Device

namespace scp {

// idx: n x k int64 (rows of `mean`), w: n x k weights (float32 or float64, used as given: rows need not sum
// to 1), mean: m x p float32, sd: m x p float32 or nullptr (then every component has variance 0), all
// row-major and read in place. Outputs (caller-owned, n x p float32):
//   out_mean[i] = sum_j w[i,j] * mean[idx[i,j]]
//   out_var[i]  = max(0, sum_j w[i,j] * (sd[idx[i,j]]^2 + mean[idx[i,j]]^2) - out_mean[i]^2)
// (out_var may be nullptr: means only; with out_sd it receives the SD, sqrt taken in float64 before
// rounding). Sums run in float64 over j in order, each product and sum rounded
// separately (no FMA contraction), so results do not depend on the thread count and equal the CUDA twin and
// scipy's CSR @ float64 product bit for bit. Every index is checked first: std::out_of_range names the
// first bad one. Work is split over output rows (threads); memory: two float64 column panels per thread.
template <class W>
void gather_mixture(const int64_t* idx, const W* w, int64_t n, int k, const float* mean, const float* sd,
                    int64_t m, int64_t p, int threads, float* out_mean, float* out_var, bool out_sd = false,
                    Device device = Device::CPU);

// The same mixture on arrays that already live on a CUDA device (e.g. torch CUDA tensors): every pointer, the
// outputs included, is device memory of one GPU (checked: std::invalid_argument otherwise), read and written in
// place on `stream` (as in topk_similarity_on_device). Indices are checked on the device first (std::out_of_range
// naming the first bad one, nothing written). Same results bit for bit; without CUDA, std::runtime_error.
template <class W>
void gather_mixture_on_device(const int64_t* idx, const W* w, int64_t n, int k, const float* mean, const float* sd,
                              int64_t m, int64_t p, float* out_mean, float* out_var, bool out_sd = false,
                              std::uintptr_t stream = 0);

// Internal: the CPU driver behind gather_mixture (arguments already validated).
template <class W>
void gather_rows_cpu(const int64_t* idx, const W* w, int64_t n, int k, const float* mean, const float* sd,
                     int64_t p, int threads, float* out_mean, float* out_var, bool out_sd);

}  // namespace scp
