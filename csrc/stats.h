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
