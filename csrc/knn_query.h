// One k-nearest-neighbour query on a GridView: expanding ring search with exact termination.
// Header-only and free of the standard library so the CPU driver and the CUDA kernel share it.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>

#include "grid.h"

#ifdef __CUDACC__
#define SCP_HD __host__ __device__
#else
#define SCP_HD
#endif

namespace scp {

// Ascending list of the k best (squared distance, original index) pairs; ties broken by index.
// Starts full of (DBL_MAX, INT64_MAX) sentinels so the k-th entry is always the cut-off.
struct Candidates {
  double* d2;
  int64_t* id;
  int k;
};

SCP_HD inline void reset(Candidates& c) {
  for (int t = 0; t < c.k; ++t) {
    c.d2[t] = DBL_MAX;
    c.id[t] = INT64_MAX;
  }
}

SCP_HD inline bool pair_less(double da, int64_t ia, double db, int64_t ib) {
  return da < db || (da == db && ia < ib);
}

SCP_HD inline void offer(Candidates& c, double d2, int64_t id) {
  if (!pair_less(d2, id, c.d2[c.k - 1], c.id[c.k - 1])) return;
  int t = c.k - 1;
  while (t > 0 && d2 < c.d2[t - 1]) {  // tight loop on distance; exact ties handled below
    c.d2[t] = c.d2[t - 1];
    c.id[t] = c.id[t - 1];
    --t;
  }
  while (t > 0 && d2 == c.d2[t - 1] && id < c.id[t - 1]) {
    c.d2[t] = c.d2[t - 1];
    c.id[t] = c.id[t - 1];
    --t;
  }
  c.d2[t] = d2;
  c.id[t] = id;
}

template <int DIM>
SCP_HD inline double sq_dist(const double* p, const double* q) {
  double d2 = 0.0;
  for (int d = 0; d < DIM; ++d) {
    const double diff = p[d] - q[d];
    d2 += diff * diff;
  }
  return d2;
}

// Offers the sorted points [a, b) except `skip` (a sorted position, or -1).
template <int DIM>
SCP_HD inline void scan_range(const GridView& g, int64_t a, int64_t b, const double* q, int64_t skip,
                              Candidates& c) {
  double kth = c.d2[c.k - 1];  // kept in a register: stores into c may alias the grid arrays
  for (int64_t s = a; s < b; ++s) {
    const double d2 = sq_dist<DIM>(g.xyz + s * DIM, q);
    if (d2 > kth || s == skip) continue;
    offer(c, d2, g.order[s]);
    kth = c.d2[c.k - 1];
  }
}

// Cell of coordinate v along d, clamped to the grid (compared as double: v may be far outside).
SCP_HD inline int64_t clamp_cell(double v, const GridView& g, int d) {
  const double f = (v - g.lo[d]) * g.inv_h;
  if (!(f > 0)) return 0;
  if (f >= static_cast<double>(g.size[d] - 1)) return g.size[d] - 1;
  return static_cast<int64_t>(f);
}

// Lower bound on the distance along d from v to cell j (made conservative by the slack).
SCP_HD inline double cell_gap(double v, int64_t j, const GridView& g, int d) {
  const double lo = g.lo[d] + static_cast<double>(j) * g.h;
  double gap = lo - v;
  const double above = v - (lo + g.h);
  gap = above > gap ? above : gap;
  gap -= g.slack;
  return gap > 0 ? gap : 0.0;
}

// Visits the cells at Chebyshev distance exactly r from cell cc that can still hold a point closer
// than the current k-th candidate; rows of cells are scanned as contiguous ranges.
template <int DIM>
SCP_HD inline void scan_ring(const GridView& g, const int64_t* cc, int64_t r, const double* q, int64_t skip,
                             Candidates& c) {
  const int64_t z0 = DIM == 3 ? (cc[2] - r > 0 ? cc[2] - r : 0) : 0;
  const int64_t z1 = DIM == 3 ? (cc[2] + r < g.size[2] ? cc[2] + r : g.size[2] - 1) : 0;
  const int64_t y0 = cc[1] - r > 0 ? cc[1] - r : 0;
  const int64_t y1 = cc[1] + r < g.size[1] ? cc[1] + r : g.size[1] - 1;
  const int64_t x0 = cc[0] - r > 0 ? cc[0] - r : 0;
  const int64_t x1 = cc[0] + r < g.size[0] ? cc[0] + r : g.size[0] - 1;
  for (int64_t z = z0; z <= z1; ++z) {
    const bool zface = DIM == 3 && (z == cc[2] - r || z == cc[2] + r);
    const double zg = DIM == 3 ? cell_gap(q[2], z, g, 2) : 0.0;
    for (int64_t y = y0; y <= y1; ++y) {
      const double kth = c.d2[c.k - 1];
      const double yg = cell_gap(q[1], y, g, 1);
      const double rest = kth - zg * zg - yg * yg;
      if (rest < 0) continue;
      int64_t xa = x0, xb = x1;
      if (kth < DBL_MAX) {  // only cells the k-th ball reaches along x
        const double reach = sqrt(rest) + g.slack;
        const int64_t ra = clamp_cell(q[0] - reach, g, 0), rb = clamp_cell(q[0] + reach, g, 0);
        xa = ra > xa ? ra : xa;
        xb = rb < xb ? rb : xb;
      }
      const int64_t base = (z * g.size[1] + y) * g.size[0];
      if (zface || y == cc[1] - r || y == cc[1] + r) {
        if (xa <= xb) scan_range<DIM>(g, g.cell_start[base + xa], g.cell_start[base + xb + 1], q, skip, c);
      } else {
        const int64_t left = cc[0] - r, right = cc[0] + r;
        if (left >= xa && left <= xb) scan_range<DIM>(g, g.cell_start[base + left], g.cell_start[base + left + 1], q, skip, c);
        if (right >= xa && right <= xb) scan_range<DIM>(g, g.cell_start[base + right], g.cell_start[base + right + 1], q, skip, c);
      }
    }
  }
}

// k nearest neighbours of the point q among the grid's points (sorted position `skip` excluded; -1: none),
// searching the rings of cells from r0 on (the candidates already hold every point of the rings below r0).
// Stops once no unvisited cell can hold a point closer than the current k-th (with a margin for rounding),
// or the grid is exhausted.
template <int DIM>
SCP_HD inline void knn_query_at(const GridView& g, const double* q, int64_t skip, Candidates& c, int64_t r0 = 0) {
  int64_t cc[3] = {0, 0, 0};
  for (int d = 0; d < DIM; ++d) cc[d] = clamp_cell(q[d], g, d);
  for (int64_t r = r0;; ++r) {
    scan_ring<DIM>(g, cc, r, q, skip, c);
    bool exhausted = true;
    double bound = DBL_MAX;
    for (int d = 0; d < DIM; ++d) {
      if (cc[d] - r > 0) {
        exhausted = false;
        const double gap = q[d] - (g.lo[d] + static_cast<double>(cc[d] - r) * g.h);
        bound = gap < bound ? gap : bound;
      }
      if (cc[d] + r < g.size[d] - 1) {
        exhausted = false;
        const double gap = g.lo[d] + static_cast<double>(cc[d] + r + 1) * g.h - q[d];
        bound = gap < bound ? gap : bound;
      }
    }
    if (exhausted) return;
    bound -= g.slack;
    if (bound > 0 && c.d2[c.k - 1] < bound * bound) return;
  }
}

// k nearest neighbours of the sorted point s (itself excluded).
template <int DIM>
SCP_HD inline void knn_query(const GridView& g, int64_t s, Candidates& c, int64_t r0 = 0) {
  knn_query_at<DIM>(g, g.xyz + s * DIM, s, c, r0);
}

// Solve grid position s and write its row at the point's original index (CPU and CUDA drivers alike).
template <int DIM, class I, class D>
SCP_HD inline void knn_row(const GridView& g, int64_t s, Candidates& c, bool include_self, I* indices, D* distances) {
  reset(c);
  knn_query<DIM>(g, s, c);
  const int64_t width = c.k + (include_self ? 1 : 0);
  const int64_t i = g.order[s];
  I* oi = indices + i * width;
  D* od = distances + i * width;
  if (include_self) {
    *oi++ = static_cast<I>(i);
    *od++ = D(0);
  }
  for (int t = 0; t < c.k; ++t) {
    oi[t] = static_cast<I>(c.id[t]);
    od[t] = static_cast<D>(sqrt(c.d2[t]));
  }
}

}  // namespace scp
