// Blocked top-k inner-product search (Python-free): for every query row, the k reference rows with the
// largest dot product, without materialising the n_query x n_ref similarity matrix.
// For cosine similarity pass L2-normalised rows.
#pragma once

#include <cstdint>
#include <string>

#include "spatial.h"  // Device

namespace scp {

// query: nq x dim, ref: nr x dim (row-major float32). Outputs are caller-owned, nq x k each, row i holding
// the k best reference indices sorted by similarity (descending), ties by the smaller index.
// Work is split over query blocks (threads) and reference panels (registers); each row keeps a size-k heap.
// Every score is the FMA chain s = fma(q[d], r[d], s) over d in order, on every CPU path and on CUDA.
// Memory: one packed (dim-major per panel) copy of the reference plus a small tile per thread.
// device: CPU (threads) or CUDA (the same results, bit for bit).
void topk_similarity(const float* query, int64_t nq, const float* ref, int64_t nr, int dim, int k, int threads,
                     int64_t* indices, float* similarities, Device device = Device::CPU);

// The same search on arrays that already live on a CUDA device (e.g. torch CUDA tensors): every pointer, the
// outputs included, is device memory of one GPU (checked: std::invalid_argument otherwise), read and written in
// place, the kernel launched on `stream` (a cudaStream_t as an integer: 0 default, 1 legacy default, 2 per-thread
// default) and waited for. Same results as topk_similarity bit for bit; without CUDA, std::runtime_error.
void topk_similarity_on_device(const float* query, int64_t nq, const float* ref, int64_t nr, int dim, int k,
                               int64_t* indices, float* similarities, std::uintptr_t stream = 0);

// The CPU instruction set topk_rows_cpu uses: "avx512", "avx2" (with FMA) or "portable".
std::string topk_isa();

// Internal: the CPU driver behind topk_similarity (arguments already validated).
void topk_rows_cpu(const float* query, int64_t nq, const float* ref, int64_t nr, int dim, int k, int threads,
                   int64_t* indices, float* similarities);

}  // namespace scp
