// CPU kNN driver: queries in grid (cell) order for locality, rows written at the original index.
#include <cmath>
#include <vector>

#include "backend.h"
#include "knn_query.h"
#include "parallel.h"

namespace scp {

double knn_cell_occupancy(int k, int dim) {
  // Flat optimum between 0.1k and 0.5k on uniform data (10^6 points, k = 10); refined for clusters.
  const double per_cell = dim == 2 ? 0.25 * k : 0.3 * k;
  return per_cell < 1.0 ? 1.0 : per_cell;
}

namespace {

template <int DIM, class I, class D>
void rows(const GridView& g, int k, bool include_self, int threads, I* indices, D* distances) {
  parallel_for(0, g.n, 4096, threads, [&](int64_t lo, int64_t hi) {
    std::vector<double> d2(k);
    std::vector<int64_t> id(k);
    Candidates c{d2.data(), id.data(), k};
    for (int64_t s = lo; s < hi; ++s) knn_row<DIM>(g, s, c, include_self, indices, distances);
  });
}

}  // namespace

template <class I, class D>
void knn_rows_cpu(const GridView& g, int k, bool include_self, int threads, I* indices, D* distances) {
  if (g.dim == 2) {
    rows<2>(g, k, include_self, threads, indices, distances);
  } else {
    rows<3>(g, k, include_self, threads, indices, distances);
  }
}

template void knn_rows_cpu<int32_t, float>(const GridView&, int, bool, int, int32_t*, float*);
template void knn_rows_cpu<int32_t, double>(const GridView&, int, bool, int, int32_t*, double*);
template void knn_rows_cpu<int64_t, float>(const GridView&, int, bool, int, int64_t*, float*);
template void knn_rows_cpu<int64_t, double>(const GridView&, int, bool, int, int64_t*, double*);

}  // namespace scp
