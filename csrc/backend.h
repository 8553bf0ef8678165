// Internal: the per-device kNN drivers behind scp::knn_graph (not part of the public API).
#pragma once

#include <cstdint>

#include "grid.h"
#include "spatial.h"

namespace scp {

// Points per occupied cell aimed at by the kNN grid (measured best for k around 10, see bench_knn.py).
double knn_cell_occupancy(int k, int dim);

// Builds its own grid (split where crowded in 2-D) and fills the rows.
template <class I, class D>
void knn_rows_cpu(const double* pts, int64_t n, int dim, int k, bool include_self, int threads, I* indices,
                  D* distances);

#ifdef SCPROSPATIAL_WITH_CUDA
constexpr int kCudaMaxK = kCudaKnnMaxK;  // per-thread candidate list lives in registers/local memory
int cuda_device_count_impl();
template <class I, class D>
void knn_rows_cuda(const Grid& g, int k, bool include_self, I* indices, D* distances);
void topk_rows_cuda(const float* query, int64_t nq, const float* ref, int64_t nr, int dim, int k, int64_t* indices,
                    float* similarities);
template <class W>
void gather_rows_cuda(const int64_t* idx, const W* w, int64_t n, int k, const float* mean, const float* sd, int64_t m,
                      int64_t p, float* out_mean, float* out_var, bool out_sd);
// Caller-owned device arrays, read and written in place on `stream` (see topk.h / gather.h: *_on_device).
void topk_rows_cuda_resident(const float* query, int64_t nq, const float* ref, int64_t nr, int dim, int k,
                             int64_t* indices, float* similarities, std::uintptr_t stream);
template <class W>
void gather_rows_cuda_resident(const int64_t* idx, const W* w, int64_t n, int k, const float* mean, const float* sd,
                               int64_t m, int64_t p, float* out_mean, float* out_var, bool out_sd,
                               std::uintptr_t stream);
#endif

}  // namespace scp
