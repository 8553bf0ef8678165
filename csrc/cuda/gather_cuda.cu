// CUDA twin of the CPU weighted gather-average: the profiles (m x p, float32) are copied to the device once,
// the outputs are produced in row chunks of bounded size. One thread per output column, output rows over the
// grid's y dimension; each thread adds the k weighted source rows in order, in float64 with every product and
// sum rounded separately (__dmul_rn / __dadd_rn: no FMA contraction), so results equal the CPU's bit for bit.
// Reads of a source row are coalesced along the columns; idx and w of a row are read by every thread of the
// block (one cached broadcast). Two entry points: host arrays (profiles copied once, outputs in row chunks)
// and caller-owned device arrays (read and written in place on the caller's stream: no host round trip).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "backend.h"
#include "cuda/device_array.cuh"

namespace scp {

namespace {

constexpr int kThreads = 128;                    // columns per block
constexpr int64_t kChunkBytes = int64_t{1} << 29;  // device output bytes per row chunk (both outputs)

using cuda::check;
using cuda::DeviceArray;
using cuda::OnOneDevice;

template <class W>
__global__ void __launch_bounds__(kThreads) gather_kernel(const int64_t* __restrict__ idx, const W* __restrict__ w,
                                                          int64_t rows, int k, const float* __restrict__ mean,
                                                          const float* __restrict__ sd, int64_t p,
                                                          float* __restrict__ out_mean, float* __restrict__ out_var,
                                                          bool out_sd) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (c >= p) return;
  for (int64_t i = blockIdx.y; i < rows; i += gridDim.y) {
    double a1 = 0.0, a2 = 0.0;
    for (int j = 0; j < k; ++j) {
      const int64_t r = idx[i * k + j];
      const double wj = static_cast<double>(w[i * k + j]);
      const double x = mean[r * p + c];
      a1 = __dadd_rn(a1, __dmul_rn(wj, x));
      if (out_var != nullptr) {
        const double v = sd != nullptr ? static_cast<double>(sd[r * p + c]) : 0.0;
        const double x2 = sd != nullptr ? __dadd_rn(__dmul_rn(v, v), __dmul_rn(x, x)) : __dmul_rn(x, x);
        a2 = __dadd_rn(a2, __dmul_rn(wj, x2));
      }
    }
    out_mean[i * p + c] = static_cast<float>(a1);
    if (out_var != nullptr) {
      double v = __dsub_rn(a2, __dmul_rn(a1, a1));
      v = v < 0.0 ? 0.0 : v;
      out_var[i * p + c] = static_cast<float>(out_sd ? __dsqrt_rn(v) : v);
    }
  }
}

// Smallest flat position e of idx with idx[e] outside [0, m) (positions past every bad one stay at `none`).
__global__ void first_bad_index(const int64_t* __restrict__ idx, int64_t count, int64_t m,
                                unsigned long long* __restrict__ first) {
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < count;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (idx[e] < 0 || idx[e] >= m) atomicMin(first, static_cast<unsigned long long>(e));
  }
}

template <class W>
void launch_gather(const int64_t* idx, const W* w, int64_t rows, int k, const float* mean, const float* sd, int64_t p,
                   float* out_mean, float* out_var, bool out_sd, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((p + kThreads - 1) / kThreads),
                  static_cast<unsigned>(std::min<int64_t>(rows, 65535)));
  gather_kernel<W><<<grid, kThreads, 0, stream>>>(idx, w, rows, k, mean, sd, p, out_mean, out_var, out_sd);
  check(cudaGetLastError(), "kernel launch");
  check(cudaStreamSynchronize(stream), "kernel");
}

}  // namespace

template <class W>
void gather_rows_cuda(const int64_t* idx, const W* w, int64_t n, int k, const float* mean, const float* sd, int64_t m,
                      int64_t p, float* out_mean, float* out_var, bool out_sd) {
  if (cuda_device_count_impl() == 0) throw std::runtime_error("no CUDA device is visible");
  if (n == 0 || p == 0) return;
  const bool var = out_var != nullptr;
  DeviceArray<float> mu(mean, static_cast<size_t>(m) * p);
  DeviceArray<float> s(var && sd != nullptr ? sd : nullptr, var && sd != nullptr ? static_cast<size_t>(m) * p : 0);
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(n, kChunkBytes / (p * sizeof(float) * (var ? 2 : 1))));
  DeviceArray<int64_t> ix(static_cast<size_t>(chunk) * k);
  DeviceArray<W> wt(static_cast<size_t>(chunk) * k);
  DeviceArray<float> om(static_cast<size_t>(chunk) * p);
  DeviceArray<float> ov(var ? static_cast<size_t>(chunk) * p : 0);
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t rows = std::min(chunk, n - r0);
    check(cudaMemcpy(ix.ptr, idx + r0 * k, rows * k * sizeof(int64_t), cudaMemcpyHostToDevice), "copy indices");
    check(cudaMemcpy(wt.ptr, w + r0 * k, rows * k * sizeof(W), cudaMemcpyHostToDevice), "copy weights");
    launch_gather<W>(ix.ptr, wt.ptr, rows, k, mu.ptr, sd != nullptr && var ? s.ptr : nullptr, p, om.ptr,
                     var ? ov.ptr : nullptr, out_sd, nullptr);
    check(cudaMemcpy(out_mean + r0 * p, om.ptr, rows * p * sizeof(float), cudaMemcpyDeviceToHost), "copy means");
    if (var) {
      check(cudaMemcpy(out_var + r0 * p, ov.ptr, rows * p * sizeof(float), cudaMemcpyDeviceToHost),
            "copy variances");
    }
  }
}

template <class W>
void gather_rows_cuda_resident(const int64_t* idx, const W* w, int64_t n, int k, const float* mean, const float* sd,
                               int64_t m, int64_t p, float* out_mean, float* out_var, bool out_sd,
                               std::uintptr_t stream) {
  if (cuda_device_count_impl() == 0) throw std::runtime_error("no CUDA device is visible");
  if (n == 0 || p == 0) return;
  const OnOneDevice on({{"idx", idx}, {"w", w}, {"mean", mean}, {"sd", out_var != nullptr ? sd : nullptr},
                        {"out_mean", out_mean}, {"out_var", out_var}});
  const cudaStream_t s = cuda::as_stream(stream);
  // Every index checked on the device first, as the host path does on the host: nothing is written on error.
  DeviceArray<unsigned long long> first(1);
  const unsigned long long none = ~0ULL;
  check(cudaMemsetAsync(first.ptr, 0xFF, sizeof(none), s), "memset");
  const int64_t count = n * k;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((count + 255) / 256, 4096));
  first_bad_index<<<blocks, 256, 0, s>>>(idx, count, m, first.ptr);
  check(cudaGetLastError(), "kernel launch");
  unsigned long long bad = none;
  check(cudaMemcpyAsync(&bad, first.ptr, sizeof(bad), cudaMemcpyDeviceToHost, s), "copy");
  check(cudaStreamSynchronize(s), "index check");
  if (bad != none) {
    const auto e = static_cast<int64_t>(bad);
    int64_t value = 0;
    check(cudaMemcpy(&value, idx + e, sizeof(value), cudaMemcpyDeviceToHost), "copy");
    throw std::out_of_range("index " + std::to_string(value) + " (row " + std::to_string(e / k) + ", column " +
                            std::to_string(e % k) + ") is out of range for " + std::to_string(m) + " profile rows");
  }
  launch_gather<W>(idx, w, n, k, mean, out_var != nullptr ? sd : nullptr, p, out_mean, out_var, out_sd, s);
}

template void gather_rows_cuda_resident<float>(const int64_t*, const float*, int64_t, int, const float*, const float*,
                                               int64_t, int64_t, float*, float*, bool, std::uintptr_t);
template void gather_rows_cuda_resident<double>(const int64_t*, const double*, int64_t, int, const float*,
                                                const float*, int64_t, int64_t, float*, float*, bool, std::uintptr_t);

template void gather_rows_cuda<float>(const int64_t*, const float*, int64_t, int, const float*, const float*, int64_t,
                                      int64_t, float*, float*, bool);
template void gather_rows_cuda<double>(const int64_t*, const double*, int64_t, int, const float*, const float*,
                                       int64_t, int64_t, float*, float*, bool);

}  // namespace scp
