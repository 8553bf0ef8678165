// Blocked top-k inner-product search (Python-free): for every query row, the k reference rows with the
// largest dot product, without materialising the n_query x n_ref similarity matrix.
// For cosine similarity pass L2-normalised rows.
#pragma once

#include <cstdint>

namespace scp {

// query: nq x dim, ref: nr x dim (row-major float32). Outputs are caller-owned, nq x k each, row i holding
// the k best reference indices sorted by similarity (descending), ties by the smaller index.
// Work is split over query blocks (threads) and reference blocks (cache); each row keeps a size-k heap.
// Memory: one packed (dim-major per block) copy of the reference plus a small tile per thread.
void topk_similarity(const float* query, int64_t nq, const float* ref, int64_t nr, int dim, int k, int threads,
                     int64_t* indices, float* similarities);

// Internal: the CPU driver behind topk_similarity (arguments already validated).
void topk_rows_cpu(const float* query, int64_t nq, const float* ref, int64_t nr, int dim, int k, int threads,
                   int64_t* indices, float* similarities);

}  // namespace scp
