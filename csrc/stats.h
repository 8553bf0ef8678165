// Permutation null of neighbourhood enrichment (Python-free): the mean and SD, over label permutations, of the
// number of graph edges from a cell of type a to a cell of type b.
#pragma once

#include <cstdint>

namespace scp {

// Graph: CSR (indptr n+1, indices nnz; int64) of the directed edges to count, n cells. codes: n labels in
// [0, n_types) or -1 (missing: never moved, its edges never counted). Labels are permuted within groups:
// `members` lists the cells to shuffle, group g being members[offsets[g] .. offsets[g+1]) (cells in no group keep
// their label). Every permutation p draws from its own stream, seeded by (seed, p), so the result depends on the
// seed only, not on the thread count. Outputs (caller-owned, n_types x n_types row-major): mean and population SD
// (ddof 0, as squidpy) of the counts over n_perms permutations; sums are exact integer arithmetic (shifted by the
// first permutation's counts), so the results do not depend on how permutations were split over threads.
void enrichment_null(const int64_t* indptr, const int64_t* indices, int64_t n, const int32_t* codes,
                     const int64_t* members, const int64_t* offsets, int64_t n_groups, int n_types, int64_t n_perms,
                     uint64_t seed, int threads, double* mean, double* sd);

}  // namespace scp

namespace scp {

// Moran's I sums on the row-standardised binary graph (CSR indptr/indices, n cells; w_ij = 1/deg_i), for every
// column of x (n x p, row-major float64) centred by `mean` (p): num[f] = sum_i z_if sum_j w_ij z_jf and
// den[f] = sum_i z_if^2, and the graph's moments s = {S0, S1, S2} (as pysal/squidpy define them). Rows are summed in
// fixed blocks added in order, so the results do not depend on the thread count. `sorted_rows`: every row's
// indices ascend (the reverse-edge look-up for S1 then bisects instead of scanning).
void moran_sums(const int64_t* indptr, const int64_t* indices, int64_t n, const double* x, int64_t p,
                const double* mean, bool sorted_rows, int threads, double* num, double* den, double* s);

}  // namespace scp
