// CUDA twin of the CPU top-k kernel: each thread block scores 64 query rows against the reference in
// 64-row tiles (shared-memory GEMM tiles, 4 x 4 scores per thread), keeps the scores that beat a row's
// current k-th best in a shared candidate list, and merges those into the row's sorted top-k (held in the
// output arrays) after every tile. Scores are the same FMA chain as on the CPU, s = fma(q[d], r[d], s)
// over d in order from 0, so results equal the CPU's bit for bit; references arrive in index order, so
// ties keep the smaller index as on the CPU.
// Two entry points: host arrays (copied to the device and back) and caller-owned device arrays (read and
// written in place on the caller's stream, e.g. torch CUDA tensors: no host round trip).
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "backend.h"
#include "cuda/device_array.cuh"

namespace scp {

namespace {

constexpr int kBQ = 64;  // query rows per block
constexpr int kBR = 64;  // reference rows per tile
constexpr int kBD = 16;  // dimensions per shared-memory slice

using cuda::check;
using cuda::DeviceArray;
using cuda::OnOneDevice;

__device__ inline bool ranks_before(float sa, int64_t ia, float sb, int64_t ib) {
  return sa > sb || (sa == sb && ia < ib);
}

__global__ void __launch_bounds__(256) topk_kernel(const float* __restrict__ query, int64_t nq,
                                                   const float* __restrict__ ref, int64_t nr, int dim, int k,
                                                   int64_t* __restrict__ out_idx, float* __restrict__ out_sim) {
  __shared__ float qs[kBD][kBQ + 1];  // +1: the transposing stores hit distinct banks
  __shared__ float rs[kBD][kBR + 1];
  __shared__ float cand_s[kBQ][kBR];
  __shared__ int cand_j[kBQ][kBR];
  __shared__ int count[kBQ];
  __shared__ int fill[kBQ];
  __shared__ float thr[kBQ];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kBQ;
  if (tid < kBQ) {
    count[tid] = 0;
    fill[tid] = 0;
    thr[tid] = -INFINITY;
  }
  for (int64_t r0 = 0; r0 < nr; r0 += kBR) {
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
    for (int d0 = 0; d0 < dim; d0 += kBD) {
      for (int e = tid; e < kBQ * kBD; e += blockDim.x) {  // row-major loads, coalesced along d
        const int row = e / kBD, d = e % kBD;
        const int64_t qi = q0 + row, ri = r0 + row;
        qs[d][row] = (qi < nq && d0 + d < dim) ? query[qi * dim + d0 + d] : 0.0f;
        rs[d][row] = (ri < nr && d0 + d < dim) ? ref[ri * dim + d0 + d] : 0.0f;
      }
      __syncthreads();
      const int dn = min(kBD, dim - d0);
      for (int d = 0; d < dn; ++d) {
        float a[4], b[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) a[i] = qs[d][ty * 4 + i];
#pragma unroll
        for (int j = 0; j < 4; ++j) b[j] = rs[d][tx * 4 + j];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[i][j] = __fmaf_rn(a[i], b[j], acc[i][j]);
      }
      __syncthreads();
    }
    // Scores beating the row's k-th best join the row's candidates.
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int row = ty * 4 + i;
      if (q0 + row >= nq) continue;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int col = tx * 4 + j;
        if (r0 + col < nr && acc[i][j] > thr[row]) {
          const int at = atomicAdd(&count[row], 1);
          cand_s[row][at] = acc[i][j];
          cand_j[row][at] = col;
        }
      }
    }
    __syncthreads();
    // One thread per row merges its candidates into the sorted top-k kept in the outputs.
    if (tid < kBQ && count[tid] > 0) {  // rows past nq never get candidates
      float* bs = out_sim + (q0 + tid) * k;
      int64_t* bi = out_idx + (q0 + tid) * k;
      int m = fill[tid];
      for (int c = 0; c < count[tid]; ++c) {
        const float s = cand_s[tid][c];
        const int64_t id = r0 + cand_j[tid][c];
        if (m == k && !ranks_before(s, id, bs[k - 1], bi[k - 1])) continue;
        int t = m < k ? m++ : k - 1;
        while (t > 0 && ranks_before(s, id, bs[t - 1], bi[t - 1])) {
          bs[t] = bs[t - 1];
          bi[t] = bi[t - 1];
          --t;
        }
        bs[t] = s;
        bi[t] = id;
      }
      fill[tid] = m;
      count[tid] = 0;
      if (m == k) thr[tid] = bs[k - 1];
    }
    __syncthreads();
  }
}

void launch_topk(const float* query, int64_t nq, const float* ref, int64_t nr, int dim, int k, int64_t* indices,
                 float* similarities, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>((nq + kBQ - 1) / kBQ);
  topk_kernel<<<blocks, 256, 0, stream>>>(query, nq, ref, nr, dim, k, indices, similarities);
  check(cudaGetLastError(), "kernel launch");
  check(cudaStreamSynchronize(stream), "kernel");
}

}  // namespace

void topk_rows_cuda(const float* query, int64_t nq, const float* ref, int64_t nr, int dim, int k,
                    int64_t* indices, float* similarities) {
  if (cuda_device_count_impl() == 0) throw std::runtime_error("no CUDA device is visible");
  if (nq == 0) return;
  DeviceArray<float> q(query, static_cast<size_t>(nq) * dim);
  DeviceArray<float> r(ref, static_cast<size_t>(nr) * dim);
  DeviceArray<int64_t> idx(static_cast<size_t>(nq) * k);
  DeviceArray<float> sim(static_cast<size_t>(nq) * k);
  launch_topk(q.ptr, nq, r.ptr, nr, dim, k, idx.ptr, sim.ptr, nullptr);
  check(cudaMemcpy(indices, idx.ptr, static_cast<size_t>(nq) * k * sizeof(int64_t), cudaMemcpyDeviceToHost),
        "copy indices");
  check(cudaMemcpy(similarities, sim.ptr, static_cast<size_t>(nq) * k * sizeof(float), cudaMemcpyDeviceToHost),
        "copy similarities");
}

void topk_rows_cuda_resident(const float* query, int64_t nq, const float* ref, int64_t nr, int dim, int k,
                             int64_t* indices, float* similarities, std::uintptr_t stream) {
  if (cuda_device_count_impl() == 0) throw std::runtime_error("no CUDA device is visible");
  if (nq == 0) return;
  const OnOneDevice on({{"query", query}, {"ref", ref}, {"out_indices", indices}, {"out_similarities", similarities}});
  launch_topk(query, nq, ref, nr, dim, k, indices, similarities, cuda::as_stream(stream));
}

}  // namespace scp
