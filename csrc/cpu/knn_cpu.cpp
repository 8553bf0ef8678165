// CPU kNN driver. 2-D: a grid on the mean density whose crowded cells are split into finer grids
// (grid.h SubGrids), so clustered layouts keep a few points per cell. Queries run in grid (cell) order
// for locality; rows are written at the point's original index (their cache lines requested early).
// An unsplit 2-D cell is solved as a block: the points of the square of cells around it are copied
// once, every query of the cell scores them all, keeps those under a threshold (branch-free) and ranks
// only those; the exact ring search finishes the rare query whose k-th neighbour may lie outside the
// square. Points of split cells search their cell's finer grid first, then the rings around the cell.
// 3-D: the ring search on a refined grid.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "backend.h"
#include "knn_query.h"
#include "parallel.h"

namespace scp {

double knn_cell_occupancy(int k, int dim) {
  // 2-D: cells of ~k/2 points scored as 3 x 3 blocks (bench_knn.py, 10^6 points, k = 10); 3-D: ring search.
  const double per_cell = dim == 2 ? 0.5 * k : 0.3 * k;
  return per_cell < 1.0 ? 1.0 : per_cell;
}

namespace {

// Rows land at the points' original indices, i.e. at random places: written straight from the search, each
// row's cache lines are fetched one miss at a time. Rows are kept in sorted order in a small buffer
// instead, then copied out in a tight loop that requests the lines of rows ahead (many misses in flight).
template <class I, class D>
class RowSink {
 public:
  RowSink(int k, bool include_self, const int64_t* order, I* indices, D* distances)
      : k_(k), self_(include_self), width_(k + (include_self ? 1 : 0)), order_(order), indices_(indices),
        distances_(distances), idx_(kRows * width_), dist_(kRows * width_) {}
  ~RowSink() { flush(); }

  // The row of sorted position s (positions arrive one after another).
  void put(int64_t s, const Candidates& c) {
    if (count_ == kRows || (count_ && s != base_ + count_)) flush();
    if (!count_) base_ = s;
    I* oi = idx_.data() + count_ * width_;
    D* od = dist_.data() + count_ * width_;
    if (self_) {
      *oi++ = static_cast<I>(order_[s]);
      *od++ = D(0);
    }
    for (int t = 0; t < k_; ++t) {
      oi[t] = static_cast<I>(c.id[t]);
      od[t] = static_cast<D>(std::sqrt(c.d2[t]));
    }
    ++count_;
  }

  void flush() {
    constexpr int64_t ahead = 16;
    for (int64_t r = 0; r < count_; ++r) {
      if (r + ahead < count_) {
        const int64_t j = order_[base_ + r + ahead] * width_;
        __builtin_prefetch(indices_ + j, 1);
        __builtin_prefetch(indices_ + j + width_ - 1, 1);
        __builtin_prefetch(distances_ + j, 1);
        __builtin_prefetch(distances_ + j + width_ / 2, 1);
        __builtin_prefetch(distances_ + j + width_ - 1, 1);
      }
      const int64_t j = order_[base_ + r] * width_;
      std::copy_n(idx_.data() + r * width_, width_, indices_ + j);
      std::copy_n(dist_.data() + r * width_, width_, distances_ + j);
    }
    count_ = 0;
  }

 private:
  static constexpr int64_t kRows = 1024;
  int k_;
  bool self_;
  int64_t width_;
  const int64_t* order_;
  I* indices_;
  D* distances_;
  std::vector<I> idx_;
  std::vector<D> dist_;
  int64_t base_ = 0, count_ = 0;
};

// ---- 2-D search aware of split cells

// The sub-cells of a split cell that the k-th ball reaches (all of them while the candidates are not full).
void scan_split(const GridView& v, const double* q, int64_t skip, Candidates& c) {
  const int64_t side = v.size[0];
  if (c.d2[c.k - 1] == DBL_MAX) {
    scan_range<2>(v, v.cell_start[0], v.cell_start[side * side], q, skip, c);
    return;
  }
  const double xlo = v.lo[0] - v.slack, xhi = v.lo[0] + static_cast<double>(side) * v.h + v.slack;
  const double reach0 = std::sqrt(c.d2[c.k - 1]) + v.slack;
  const int64_t ya = clamp_cell(q[1] - reach0, v, 1), yb = clamp_cell(q[1] + reach0, v, 1);
  for (int64_t y = ya; y <= yb; ++y) {
    const double yg = cell_gap(q[1], y, v, 1);
    const double rest = c.d2[c.k - 1] - yg * yg;
    if (rest < 0) continue;
    const double reach = std::sqrt(rest) + v.slack;
    if (q[0] + reach < xlo || q[0] - reach > xhi) continue;
    const int64_t xa = clamp_cell(q[0] - reach, v, 0), xb = clamp_cell(q[0] + reach, v, 0);
    scan_range<2>(v, v.cell_start[y * side + xa], v.cell_start[y * side + xb + 1], q, skip, c);
  }
}

// Cells xa..xb of row y: runs of unsplit cells as one range of points, split cells through scan_split.
void scan_cells(const GridView& g, const SubGrids& sg, int64_t y, int64_t xa, int64_t xb, const double* q,
                int64_t skip, Candidates& c) {
  const int64_t base = y * g.size[0];
  int64_t run = xa;
  for (int64_t x = xa; x <= xb; ++x) {
    if (!sg.side[base + x]) continue;
    if (run < x) scan_range<2>(g, g.cell_start[base + run], g.cell_start[base + x], q, skip, c);
    scan_split(sub_view(g, sg, base + x), q, skip, c);
    run = x + 1;
  }
  if (run <= xb) scan_range<2>(g, g.cell_start[base + run], g.cell_start[base + xb + 1], q, skip, c);
}

// scan_ring<2> (knn_query.h) with split cells scanned only where the k-th ball reaches.
void ring_2d(const GridView& g, const SubGrids& sg, const int64_t* cc, int64_t r, const double* q, int64_t skip,
             Candidates& c) {
  const int64_t y0 = std::max<int64_t>(cc[1] - r, 0), y1 = std::min<int64_t>(cc[1] + r, g.size[1] - 1);
  const int64_t x0 = std::max<int64_t>(cc[0] - r, 0), x1 = std::min<int64_t>(cc[0] + r, g.size[0] - 1);
  for (int64_t y = y0; y <= y1; ++y) {
    const double kth = c.d2[c.k - 1];
    const double yg = cell_gap(q[1], y, g, 1);
    const double rest = kth - yg * yg;
    if (rest < 0) continue;
    int64_t xa = x0, xb = x1;
    if (kth < DBL_MAX) {
      const double reach = std::sqrt(rest) + g.slack;
      xa = std::max(xa, clamp_cell(q[0] - reach, g, 0));
      xb = std::min(xb, clamp_cell(q[0] + reach, g, 0));
    }
    if (y == cc[1] - r || y == cc[1] + r) {
      if (xa <= xb) scan_cells(g, sg, y, xa, xb, q, skip, c);
    } else {
      const int64_t left = cc[0] - r, right = cc[0] + r;
      if (left >= xa && left <= xb) scan_cells(g, sg, y, left, left, q, skip, c);
      if (right >= xa && right <= xb) scan_cells(g, sg, y, right, right, q, skip, c);
    }
  }
}

// Smallest distance from q to the faces of the box of cells [lo, hi] that are not the grid's edge
// (DBL_MAX when there is none), less the rounding margin.
double open_gap(const GridView& g, const double* q, const int64_t* lo, const int64_t* hi) {
  double gap = DBL_MAX;
  for (int d = 0; d < 2; ++d) {
    if (lo[d] > 0) gap = std::min(gap, q[d] - (g.lo[d] + static_cast<double>(lo[d]) * g.h));
    if (hi[d] < g.size[d] - 1) gap = std::min(gap, g.lo[d] + static_cast<double>(hi[d] + 1) * g.h - q[d]);
  }
  return gap == DBL_MAX ? gap : gap - g.slack;
}

// True when the k-th distance is below `gap`: nothing beyond it can enter the list.
inline bool settled(const Candidates& c, double gap) {
  return gap == DBL_MAX || (gap > 0 && c.d2[c.k - 1] < gap * gap);
}

// knn_query_at<2> over rings r0, r0 + 1, ... of the split-aware grid.
void rings_2d(const GridView& g, const SubGrids& sg, const double* q, int64_t skip, Candidates& c, int64_t r0) {
  const int64_t cc[2] = {clamp_cell(q[0], g, 0), clamp_cell(q[1], g, 1)};
  for (int64_t r = r0;; ++r) {
    ring_2d(g, sg, cc, r, q, skip, c);
    const int64_t lo[2] = {cc[0] - r, cc[1] - r}, hi[2] = {cc[0] + r, cc[1] + r};
    if (settled(c, open_gap(g, q, lo, hi))) return;
  }
}

// The grid a 2-D block is taken from: the main grid, or the finer grid of one split cell.
struct Level {
  const GridView& g;  // main grid
  const SubGrids& sg;
  GridView v;         // the level's grid (g itself for the main grid)
  int64_t cell;       // the split cell, or -1 for the main grid
};

// Completes a query whose rings 0 .. r0 - 1 of its level were scanned: the level's further rings until
// nothing beyond them can enter the list; for a split cell then the main grid's rings around the cell.
void finish(const Level& L, const double* q, int64_t s, Candidates& c, int64_t r0) {
  if (L.cell < 0) {
    rings_2d(L.g, L.sg, q, s, c, r0);
    return;
  }
  const int64_t cc[2] = {clamp_cell(q[0], L.v, 0), clamp_cell(q[1], L.v, 1)};
  const int64_t lo0[2] = {cc[0] - (r0 - 1), cc[1] - (r0 - 1)}, hi0[2] = {cc[0] + r0 - 1, cc[1] + r0 - 1};
  if (r0 == 0 || !settled(c, open_gap(L.v, q, lo0, hi0))) {
    for (int64_t r = r0;; ++r) {
      scan_ring<2>(L.v, cc, r, q, s, c);
      const int64_t lo[2] = {cc[0] - r, cc[1] - r}, hi[2] = {cc[0] + r, cc[1] + r};
      if (settled(c, open_gap(L.v, q, lo, hi))) break;  // gap DBL_MAX: the whole cell was scanned
    }
  }
  const int64_t at[2] = {L.cell % L.g.size[0], L.cell / L.g.size[0]};
  if (!settled(c, open_gap(L.g, q, at, at))) rings_2d(L.g, L.sg, q, s, c, 1);
}

// ---- 2-D blocks

struct Scratch {  // per thread: the candidate list and a block's copied points (structure of arrays)
  explicit Scratch(int k) : d2(k), id(k), c{d2.data(), id.data(), k} {}
  std::vector<double> d2;
  std::vector<int64_t> id;
  Candidates c;
  std::vector<double> x, y, dist;
  std::vector<int64_t> orig;
  std::vector<int32_t> keep;
};

// Points per block square aimed at (the k-th neighbour then almost always lies inside it), and the most
// a block may hold before its queries run one by one (next to a crowded, split cell).
inline int64_t block_target(int k) { return 3 * static_cast<int64_t>(k); }
inline int64_t block_limit(int k) { return 16 * static_cast<int64_t>(k); }

// The k best of the block for the query at block position `self`: scores all, keeps those within tau.
void rank_block(Scratch& w, int64_t count, const double* q, int64_t self, double tau) {
  const double* X = w.x.data();
  const double* Y = w.y.data();
  double* dist = w.dist.data();
  int32_t* keep = w.keep.data();
  for (int64_t j = 0; j < count; ++j) {
    const double dx = X[j] - q[0], dy = Y[j] - q[1];
    dist[j] = dx * dx + dy * dy;  // the same rounding as sq_dist<2>
  }
  dist[self] = INFINITY;
  Candidates& c = w.c;
  int64_t kept;
  for (;;) {
    kept = 0;
    for (int64_t j = 0; j < count; ++j) {
      keep[kept] = static_cast<int32_t>(j);
      kept += dist[j] <= tau;
    }
    if (kept >= c.k || tau == DBL_MAX) break;
    tau = DBL_MAX;  // the guess kept fewer than k: keep everything
  }
  reset(c);
  for (int64_t u = 0; u < kept; ++u) {
    const int32_t j = keep[u];
    if (dist[j] <= c.d2[c.k - 1]) offer(c, dist[j], w.orig[j]);
  }
}

// All queries of cell (cx, cy) of a level: as one block, or one by one next to a crowded cell.
template <class Sink>
void cell_queries(const Level& L, int64_t cx, int64_t cy, Scratch& w, Sink& out) {
  const GridView& v = L.v;
  Candidates& c = w.c;
  const int64_t sx = v.size[0], sy = v.size[1], cell = cy * sx + cx;
  const int64_t a = v.cell_start[cell], b = v.cell_start[cell + 1];
  if (a == b) return;
  // Square of cells within Chebyshev radius R holding at least block_target points (or the whole grid).
  int64_t R = 1, lo[2], hi[2], count = 0;
  for (;; ++R) {
    lo[0] = std::max<int64_t>(cx - R, 0), hi[0] = std::min<int64_t>(cx + R, sx - 1);
    lo[1] = std::max<int64_t>(cy - R, 0), hi[1] = std::min<int64_t>(cy + R, sy - 1);
    count = 0;
    for (int64_t y = lo[1]; y <= hi[1]; ++y) count += v.cell_start[y * sx + hi[0] + 1] - v.cell_start[y * sx + lo[0]];
    const bool whole = lo[0] == 0 && lo[1] == 0 && hi[0] == sx - 1 && hi[1] == sy - 1;
    if (count >= block_target(c.k) || whole) break;
  }
  if (count > block_limit(c.k)) {  // one by one
    for (int64_t s = a; s < b; ++s) {
      reset(c);
      finish(L, v.xyz + 2 * s, s, c, 0);
      out.put(s, c);
    }
    return;
  }
  w.x.resize(count), w.y.resize(count), w.dist.resize(count), w.orig.resize(count), w.keep.resize(count);
  int64_t m = 0, own_at = 0;
  for (int64_t y = lo[1]; y <= hi[1]; ++y) {
    const int64_t ra = v.cell_start[y * sx + lo[0]], rb = v.cell_start[y * sx + hi[0] + 1];
    if (y == cy) own_at = m + (a - ra);
    for (int64_t s = ra; s < rb; ++s, ++m) {
      w.x[m] = v.xyz[2 * s];
      w.y[m] = v.xyz[2 * s + 1];
      w.orig[m] = v.order[s];
    }
  }
  const int64_t at[2] = {L.cell % L.g.size[0], L.cell / L.g.size[0]};
  double tau = DBL_MAX;  // threshold guess: twice the previous query's k-th squared distance
  for (int64_t s = a; s < b; ++s) {
    const double* q = v.xyz + 2 * s;
    rank_block(w, count, q, own_at + (s - a), tau);
    double gap = open_gap(v, q, lo, hi);
    if (L.cell >= 0) gap = std::min(gap, open_gap(L.g, q, at, at));  // a split cell's own faces
    if (!settled(c, gap)) finish(L, q, s, c, R + 1);
    tau = c.d2[c.k - 1] < DBL_MAX / 4 ? 2.0 * c.d2[c.k - 1] : DBL_MAX;
    out.put(s, c);
  }
}

template <class I, class D>
void rows_2d(const GridView& g, const SubGrids& sg, int k, bool include_self, int threads, I* indices,
             D* distances) {
  const int64_t rows_per_task = std::max<int64_t>(1, 4096 / std::max<int64_t>(g.size[0], 1));
  const Level main{g, sg, g, -1};
  parallel_for(0, g.size[1], rows_per_task, threads, [&](int64_t lo, int64_t hi) {
    Scratch w(k);
    RowSink<I, D> out(k, include_self, g.order, indices, distances);
    for (int64_t y = lo; y < hi; ++y) {
      for (int64_t x = 0; x < g.size[0]; ++x) {
        const int64_t cell = y * g.size[0] + x;
        if (!sg.side[cell]) {
          cell_queries(main, x, y, w, out);
          continue;
        }
        const Level split{g, sg, sub_view(g, sg, cell), cell};
        for (int64_t sy = 0; sy < split.v.size[1]; ++sy) {
          for (int64_t sx = 0; sx < split.v.size[0]; ++sx) cell_queries(split, sx, sy, w, out);
        }
      }
    }
  });
}

// ---- 3-D: the shared ring search point by point

template <class I, class D>
void rows_3d(const GridView& g, int k, bool include_self, int threads, I* indices, D* distances) {
  parallel_for(0, g.n, 4096, threads, [&](int64_t lo, int64_t hi) {
    Scratch w(k);
    RowSink<I, D> out(k, include_self, g.order, indices, distances);
    for (int64_t s = lo; s < hi; ++s) {
      reset(w.c);
      knn_query<3>(g, s, w.c);
      out.put(s, w.c);
    }
  });
}

}  // namespace

template <class I, class D>
void knn_rows_cpu(const double* pts, int64_t n, int dim, int k, bool include_self, int threads, I* indices,
                  D* distances) {
  const double per_cell = knn_cell_occupancy(k, dim);
  if (dim == 2) {
    Grid g = build_grid_mean(pts, n, dim, per_cell, threads);
    const SubGrids sg = split_crowded(g, per_cell, threads);
    rows_2d(g.view(), sg, k, include_self, threads, indices, distances);
  } else {
    rows_3d(build_grid_knn(pts, n, dim, per_cell, threads).view(), k, include_self, threads, indices, distances);
  }
}

#define SCP_INSTANTIATE(I, D) \
  template void knn_rows_cpu<I, D>(const double*, int64_t, int, int, bool, int, I*, D*);
SCP_INSTANTIATE(int32_t, float)
SCP_INSTANTIATE(int32_t, double)
SCP_INSTANTIATE(int64_t, float)
SCP_INSTANTIATE(int64_t, double)
#undef SCP_INSTANTIATE

}  // namespace scp
