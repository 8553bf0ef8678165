// Grid construction: bounding box, cell side choice and counting-sort bucketing.
#include "grid.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "parallel.h"

namespace scp {

GridView Grid::view() const {
  GridView v;
  v.dim = dim;
  v.n = n;
  v.h = h;
  v.inv_h = 1.0 / h;
  v.slack = slack;
  for (int d = 0; d < 3; ++d) {
    v.lo[d] = lo[d];
    v.size[d] = size[d];
  }
  v.cell_start = cell_start.data();
  v.xyz = xyz.data();
  v.order = order.data();
  return v;
}

void check_points(const double* pts, int64_t n, int dim) {
  if (dim != 2 && dim != 3) throw std::invalid_argument("coordinates must have 2 or 3 columns, got " + std::to_string(dim));
  for (int64_t i = 0; i < n * dim; ++i) {
    if (!std::isfinite(pts[i])) {
      throw std::invalid_argument("coordinate of point " + std::to_string(i / dim) + " is not finite");
    }
  }
}

namespace {

struct Box {
  double lo[3] = {0, 0, 0};
  double hi[3] = {0, 0, 0};
  double maxabs = 0.0;
};

Box bounding_box(const double* pts, int64_t n, int dim) {
  Box b;
  for (int d = 0; d < dim; ++d) b.lo[d] = b.hi[d] = n ? pts[d] : 0.0;
  for (int64_t i = 0; i < n; ++i) {
    for (int d = 0; d < dim; ++d) {
      const double v = pts[i * dim + d];
      b.lo[d] = std::min(b.lo[d], v);
      b.hi[d] = std::max(b.hi[d], v);
    }
  }
  for (int d = 0; d < dim; ++d) b.maxabs = std::max({b.maxabs, std::fabs(b.lo[d]), std::fabs(b.hi[d])});
  return b;
}

// Upper bound on cells: keeps the offsets array within a few times the points.
int64_t max_cells(int64_t n) { return 4 * n + 64; }

// Sets g.h / g.size from a wished cell side, coarsening until the cell count is bounded.
void set_geometry(Grid& g, const Box& b, double h) {
  const int64_t cap = max_cells(g.n);
  int active = 0;
  double extent_max = 0.0;
  for (int d = 0; d < g.dim; ++d) {
    const double e = b.hi[d] - b.lo[d];
    if (e > 0) ++active;
    extent_max = std::max(extent_max, e);
  }
  if (active == 0 || !(h > 0) || !std::isfinite(h)) h = extent_max > 0 ? extent_max : 1.0;
  for (int iter = 0; iter < 64; ++iter) {
    double cells = 1.0;
    for (int d = 0; d < g.dim; ++d) cells *= std::floor((b.hi[d] - b.lo[d]) / h) + 1.0;
    if (cells <= static_cast<double>(cap)) break;
    h *= std::pow(cells / static_cast<double>(cap), 1.0 / std::max(active, 1)) * 1.0001;
  }
  g.h = h;
  for (int d = 0; d < 3; ++d) {
    g.lo[d] = d < g.dim ? b.lo[d] : 0.0;
    g.size[d] = d < g.dim ? static_cast<int64_t>(std::floor((b.hi[d] - b.lo[d]) / h)) + 1 : 1;
  }
  // Rounding in cell assignment is far below this margin; bounds subtract it before terminating.
  g.slack = 1e-7 * h + 64.0 * DBL_EPSILON * b.maxabs;
}

// Counting sort of the points into cells (stable: original order kept inside a cell).
void bucket(Grid& g, const double* pts, int threads) {
  const int64_t n = g.n, ncells = g.ncells();
  const int dim = g.dim;
  const double inv_h = 1.0 / g.h;
  std::vector<int64_t> cid(n);
  parallel_for(0, n, 1 << 16, threads, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      int64_t c = 0;
      for (int d = dim - 1; d >= 0; --d) {
        int64_t cd = static_cast<int64_t>((pts[i * dim + d] - g.lo[d]) * inv_h);
        cd = std::min(std::max<int64_t>(cd, 0), g.size[d] - 1);
        c = c * g.size[d] + cd;
      }
      cid[i] = c;
    }
  });
  g.cell_start.assign(ncells + 1, 0);
  for (int64_t i = 0; i < n; ++i) ++g.cell_start[cid[i] + 1];
  for (int64_t c = 0; c < ncells; ++c) g.cell_start[c + 1] += g.cell_start[c];
  g.xyz.resize(n * dim);
  g.order.resize(n);
  std::vector<int64_t> fill(g.cell_start.begin(), g.cell_start.end() - 1);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t s = fill[cid[i]]++;
    g.order[s] = i;
    for (int d = 0; d < dim; ++d) g.xyz[s * dim + d] = pts[i * dim + d];
  }
}

// Mean occupancy of the cell a point falls in (what a query actually scans per cell).
double seen_occupancy(const Grid& g) {
  double s = 0.0;
  for (int64_t c = 0; c < g.ncells(); ++c) {
    const double m = static_cast<double>(g.cell_start[c + 1] - g.cell_start[c]);
    s += m * m;
  }
  return g.n ? s / static_cast<double>(g.n) : 0.0;
}

// Cell of coordinate v along d, clamped (the same arithmetic as clamp_cell in knn_query.h).
int64_t clamp_cell_host(double v, const GridView& g, int d) {
  const double f = (v - g.lo[d]) * g.inv_h;
  if (!(f > 0)) return 0;
  if (f >= static_cast<double>(g.size[d] - 1)) return g.size[d] - 1;
  return static_cast<int64_t>(f);
}

Grid empty_grid(int64_t n, int dim) {
  if (n < 1) throw std::invalid_argument("no points");
  Grid g;
  g.n = n;
  g.dim = dim;
  return g;
}

// Cell side giving about per_cell points per cell at the mean density of the bounding box (0: degenerate box).
double mean_side(const Box& b, int64_t n, int dim, double per_cell, int* active_dims) {
  double volume = 1.0;
  int active = 0;
  for (int d = 0; d < dim; ++d) {
    const double e = b.hi[d] - b.lo[d];
    if (e > 0) {
      volume *= e;
      ++active;
    }
  }
  if (active_dims) *active_dims = active;
  return active ? std::pow(volume * per_cell / static_cast<double>(n), 1.0 / active) : 0.0;
}

}  // namespace

Grid build_grid_mean(const double* pts, int64_t n, int dim, double per_cell, int threads) {
  Grid g = empty_grid(n, dim);
  const Box b = bounding_box(pts, n, dim);
  set_geometry(g, b, mean_side(b, n, dim, per_cell, nullptr));
  bucket(g, pts, threads);
  return g;
}

GridView sub_view(const GridView& g, const SubGrids& sg, int64_t cell) {
  GridView v = g;
  const int64_t side = sg.side[cell];
  const int64_t cx = cell % g.size[0], cy = cell / g.size[0];
  v.lo[0] = g.lo[0] + static_cast<double>(cx) * g.h;
  v.lo[1] = g.lo[1] + static_cast<double>(cy) * g.h;
  v.h = g.h / static_cast<double>(side);
  v.inv_h = 1.0 / v.h;
  v.size[0] = v.size[1] = side;
  v.size[2] = 1;
  v.cell_start = sg.start.data() + sg.offset[cell];
  return v;
}

SubGrids split_crowded(Grid& g, double per_cell, int threads) {
  SubGrids sg;
  const int64_t ncells = g.ncells();
  sg.side.assign(ncells, 0);
  sg.offset.assign(ncells, 0);
  if (g.dim != 2) return sg;
  int64_t total = 0;
  for (int64_t c = 0; c < ncells; ++c) {
    const double m = static_cast<double>(g.cell_start[c + 1] - g.cell_start[c]);
    if (m <= 4.0 * per_cell) continue;
    const double side = std::round(std::sqrt(m / per_cell));
    sg.side[c] = static_cast<int32_t>(std::min(side, 4096.0));
    sg.offset[c] = total;
    total += static_cast<int64_t>(sg.side[c]) * sg.side[c] + 1;
  }
  sg.start.assign(total, 0);
  const GridView base = g.view();
  parallel_for(0, ncells, 4096, threads, [&](int64_t lo, int64_t hi) {
    std::vector<int64_t> sid, pos;
    std::vector<double> xyz;
    std::vector<int64_t> order;
    for (int64_t c = lo; c < hi; ++c) {
      if (!sg.side[c]) continue;
      const GridView v = sub_view(base, sg, c);
      const int64_t a = g.cell_start[c], m = g.cell_start[c + 1] - a, nsub = v.size[0] * v.size[1];
      int64_t* start = sg.start.data() + sg.offset[c];
      sid.resize(m);
      for (int64_t j = 0; j < m; ++j) {
        const double* p = g.xyz.data() + (a + j) * 2;
        sid[j] = clamp_cell_host(p[1], v, 1) * v.size[0] + clamp_cell_host(p[0], v, 0);
        ++start[sid[j] + 1];
      }
      start[0] = a;
      for (int64_t t = 0; t < nsub; ++t) start[t + 1] += start[t];
      pos.assign(start, start + nsub);
      xyz.assign(g.xyz.begin() + a * 2, g.xyz.begin() + (a + m) * 2);
      order.assign(g.order.begin() + a, g.order.begin() + a + m);
      for (int64_t j = 0; j < m; ++j) {  // stable: original order kept inside a sub-cell
        const int64_t s = pos[sid[j]]++;
        g.xyz[s * 2] = xyz[j * 2];
        g.xyz[s * 2 + 1] = xyz[j * 2 + 1];
        g.order[s] = order[j];
      }
    }
  });
  return sg;
}

Grid build_grid_knn(const double* pts, int64_t n, int dim, double per_cell, int threads) {
  Grid g = empty_grid(n, dim);
  const Box b = bounding_box(pts, n, dim);
  int active = 0;
  set_geometry(g, b, mean_side(b, n, dim, per_cell, &active));
  bucket(g, pts, threads);
  // Clustered input: cells where the points are hold far more than intended; refine a few times.
  for (int iter = 0; iter < 3 && active; ++iter) {
    const double occ = seen_occupancy(g);
    if (occ <= 3.0 * per_cell || g.ncells() >= max_cells(n) / 2) break;
    const double old_h = g.h;
    set_geometry(g, b, g.h / std::pow(occ / per_cell, 1.0 / active));
    if (g.h >= old_h) break;
    bucket(g, pts, threads);
  }
  return g;
}

Grid build_grid_side(const double* pts, int64_t n, int dim, double h, int threads) {
  if (!(h > 0) || !std::isfinite(h)) throw std::invalid_argument("cell side must be positive and finite");
  Grid g = empty_grid(n, dim);
  set_geometry(g, bounding_box(pts, n, dim), h);
  bucket(g, pts, threads);
  return g;
}

}  // namespace scp
