// Radius graph on the same grid: box scan of the cells within the radius, rows sorted by distance.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <utility>
#include <vector>

#include "grid.h"
#include "knn_query.h"
#include "parallel.h"
#include "spatial.h"

namespace scp {

namespace {

constexpr int64_t kChunk = 4096;

// Entries found for one chunk of sorted points (rows in sorted order).
struct ChunkRows {
  std::vector<int64_t> count;
  std::vector<std::pair<double, int64_t>> entries;  // (squared distance, original index)
};

template <int DIM>
void search_chunk(const GridView& g, int64_t lo, int64_t hi, double radius, ChunkRows& out) {
  const double r2 = radius * radius;
  const int64_t reach = static_cast<int64_t>(std::floor(radius * g.inv_h)) + 1;
  out.count.assign(hi - lo, 0);
  std::vector<std::pair<double, int64_t>> row;
  for (int64_t s = lo; s < hi; ++s) {
    const double* q = g.xyz + s * DIM;
    int64_t cc[3] = {0, 0, 0}, a[3] = {0, 0, 0}, b[3] = {0, 0, 0};
    for (int d = 0; d < 3; ++d) {
      cc[d] = d < DIM ? clamp_cell(q[d], g, d) : 0;
      a[d] = std::max<int64_t>(cc[d] - reach, 0);
      b[d] = std::min<int64_t>(cc[d] + reach, g.size[d] - 1);
    }
    row.clear();
    for (int64_t z = a[2]; z <= b[2]; ++z) {
      for (int64_t y = a[1]; y <= b[1]; ++y) {
        const int64_t base = (z * g.size[1] + y) * g.size[0];
        for (int64_t t = g.cell_start[base + a[0]]; t < g.cell_start[base + b[0] + 1]; ++t) {
          const double d2 = sq_dist<DIM>(g.xyz + t * DIM, q);
          if (d2 <= r2 && t != s) row.emplace_back(d2, g.order[t]);
        }
      }
    }
    std::sort(row.begin(), row.end());
    out.count[s - lo] = static_cast<int64_t>(row.size());
    out.entries.insert(out.entries.end(), row.begin(), row.end());
  }
}

}  // namespace

struct RadiusGraph::Impl {
  Grid grid;
  bool include_self = false;
  int threads = 0;
  std::vector<ChunkRows> chunks;
  std::vector<int64_t> row_start;  // by original index, n + 1
};

RadiusGraph::RadiusGraph(const double* pts, int64_t n, int dim, double radius, bool include_self, int threads)
    : impl_(new Impl) {
  check_points(pts, n, dim);
  if (!(radius > 0) || !std::isfinite(radius)) throw std::invalid_argument("radius must be positive and finite");
  Impl& m = *impl_;
  m.include_self = include_self;
  m.threads = threads;
  m.grid = build_grid_side(pts, n, dim, radius, threads);
  const GridView g = m.grid.view();
  m.chunks.resize((n + kChunk - 1) / kChunk);
  parallel_for(0, n, kChunk, threads, [&](int64_t lo, int64_t hi) {
    if (dim == 2) {
      search_chunk<2>(g, lo, hi, radius, m.chunks[lo / kChunk]);
    } else {
      search_chunk<3>(g, lo, hi, radius, m.chunks[lo / kChunk]);
    }
  });
  m.row_start.assign(n + 1, 0);
  const int64_t self = include_self ? 1 : 0;
  for (size_t c = 0; c < m.chunks.size(); ++c) {
    for (size_t j = 0; j < m.chunks[c].count.size(); ++j) {
      m.row_start[m.grid.order[c * kChunk + j] + 1] = m.chunks[c].count[j] + self;
    }
  }
  for (int64_t i = 0; i < n; ++i) m.row_start[i + 1] += m.row_start[i];
}

RadiusGraph::~RadiusGraph() = default;

int64_t RadiusGraph::n() const { return impl_->grid.n; }

int64_t RadiusGraph::nnz() const { return impl_->row_start.back(); }

template <class I, class D>
void RadiusGraph::fill(I* indptr, I* indices, D* distances) const {
  const Impl& m = *impl_;
  for (int64_t i = 0; i <= m.grid.n; ++i) indptr[i] = static_cast<I>(m.row_start[i]);
  parallel_for(0, static_cast<int64_t>(m.chunks.size()), 1, m.threads, [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) {
      const ChunkRows& rows = m.chunks[c];
      size_t e = 0;
      for (size_t j = 0; j < rows.count.size(); ++j) {
        const int64_t i = m.grid.order[c * kChunk + j];
        int64_t out = m.row_start[i];
        if (m.include_self) {
          indices[out] = static_cast<I>(i);
          distances[out++] = D(0);
        }
        for (int64_t t = 0; t < rows.count[j]; ++t, ++e, ++out) {
          indices[out] = static_cast<I>(rows.entries[e].second);
          distances[out] = static_cast<D>(std::sqrt(rows.entries[e].first));
        }
      }
    }
  });
}

template void RadiusGraph::fill<int32_t, float>(int32_t*, int32_t*, float*) const;
template void RadiusGraph::fill<int32_t, double>(int32_t*, int32_t*, double*) const;
template void RadiusGraph::fill<int64_t, float>(int64_t*, int64_t*, float*) const;
template void RadiusGraph::fill<int64_t, double>(int64_t*, int64_t*, double*) const;

}  // namespace scp
