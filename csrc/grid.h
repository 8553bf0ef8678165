// Uniform grid (cell list) over 2-D/3-D points, built by counting sort. Python-free.
#pragma once

#include <cstdint>
#include <vector>

namespace scp {

// Plain view of a built grid: raw pointers only, so CPU code and CUDA kernels share it.
struct GridView {
  int dim = 2;                 // 2 or 3 (a 2-D grid has size[2] == 1)
  int64_t n = 0;               // points
  double lo[3] = {0, 0, 0};    // lower corner of the bounding box
  double h = 1.0;              // cell side (cells are cubes)
  double inv_h = 1.0;
  int64_t size[3] = {1, 1, 1}; // cells per dimension
  double slack = 0.0;          // safety margin for cell-boundary bounds (floating-point rounding)
  const int64_t* cell_start = nullptr;  // ncells + 1 offsets into the sorted arrays
  const double* xyz = nullptr;          // sorted coordinates, dim per point
  const int64_t* order = nullptr;       // original index of each sorted point
};

// Owning grid built on the host.
struct Grid {
  GridView view() const;
  int dim = 2;
  int64_t n = 0;
  double lo[3] = {0, 0, 0};
  double h = 1.0;
  int64_t size[3] = {1, 1, 1};
  double slack = 0.0;
  std::vector<int64_t> cell_start;
  std::vector<double> xyz;
  std::vector<int64_t> order;
  int64_t ncells() const { return size[0] * size[1] * size[2]; }
};

// Checks points are finite; throws std::invalid_argument otherwise.
void check_points(const double* pts, int64_t n, int dim);

// Grid whose cell side gives about `per_cell` points per occupied cell (refined for clustered input).
Grid build_grid_knn(const double* pts, int64_t n, int dim, double per_cell, int threads);

// Crowded 2-D cells split into their own finer grids (clustered layouts: one cell side cannot suit
// densities that differ by orders of magnitude). A split cell keeps its range of sorted points,
// reordered by sub-cell; sub-cells of a row of the cell are contiguous.
struct SubGrids {
  std::vector<int32_t> side;    // per cell: sub-cells per axis (0: not split)
  std::vector<int64_t> offset;  // per cell: position of its first sub-cell start in `start`
  std::vector<int64_t> start;   // sorted-point offsets of the sub-cells, side * side + 1 per split cell
};

// Grid on the points' mean density (no refinement), for split_crowded.
Grid build_grid_mean(const double* pts, int64_t n, int dim, double per_cell, int threads);

// Splits the cells of a 2-D grid holding more than 4 * per_cell points into about per_cell points per
// sub-cell, reordering the grid's points inside those cells.
SubGrids split_crowded(Grid& g, double per_cell, int threads);

// The grid of split cell `cell` (cell side h / side, same point arrays).
GridView sub_view(const GridView& g, const SubGrids& sg, int64_t cell);

// Grid whose cell side is at least `h` (coarsened when the bounding box would need too many cells).
Grid build_grid_side(const double* pts, int64_t n, int dim, double h, int threads);

}  // namespace scp
