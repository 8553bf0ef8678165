// CUDA twin of the CPU kNN driver: the grid is built on the host (same code), one thread runs the
// shared ring search (knn_query.h) per point, and rows are copied back into the caller's arrays.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "backend.h"
#include "cuda/device_array.cuh"
#include "knn_query.h"

namespace scp {

namespace {

using cuda::check;
using cuda::DeviceArray;

template <int DIM, class I, class D>
__global__ void knn_kernel(GridView g, int k, bool include_self, I* indices, D* distances) {
  const int64_t s = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (s >= g.n) return;
  double d2[kCudaMaxK];
  int64_t id[kCudaMaxK];
  Candidates c{d2, id, k};
  knn_row<DIM>(g, s, c, include_self, indices, distances);
}

}  // namespace

int cuda_device_count_impl() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return count;
}

template <class I, class D>
void knn_rows_cuda(const Grid& grid, int k, bool include_self, I* indices, D* distances) {
  if (cuda_device_count_impl() == 0) throw std::runtime_error("no CUDA device is visible");
  const int64_t n = grid.n;
  const size_t rows = static_cast<size_t>(n) * (k + (include_self ? 1 : 0));
  DeviceArray<int64_t> cell_start(grid.cell_start.data(), grid.cell_start.size());
  DeviceArray<double> xyz(grid.xyz.data(), grid.xyz.size());
  DeviceArray<int64_t> order(grid.order.data(), grid.order.size());
  DeviceArray<I> d_indices(rows);
  DeviceArray<D> d_distances(rows);
  GridView g = grid.view();
  g.cell_start = cell_start.ptr;
  g.xyz = xyz.ptr;
  g.order = order.ptr;
  const int block = 128;
  const unsigned blocks = static_cast<unsigned>((n + block - 1) / block);
  if (grid.dim == 2) {
    knn_kernel<2, I, D><<<blocks, block>>>(g, k, include_self, d_indices.ptr, d_distances.ptr);
  } else {
    knn_kernel<3, I, D><<<blocks, block>>>(g, k, include_self, d_indices.ptr, d_distances.ptr);
  }
  check(cudaGetLastError(), "kernel launch");
  check(cudaDeviceSynchronize(), "kernel");
  check(cudaMemcpy(indices, d_indices.ptr, rows * sizeof(I), cudaMemcpyDeviceToHost), "copy indices");
  check(cudaMemcpy(distances, d_distances.ptr, rows * sizeof(D), cudaMemcpyDeviceToHost), "copy distances");
}

template void knn_rows_cuda<int32_t, float>(const Grid&, int, bool, int32_t*, float*);
template void knn_rows_cuda<int32_t, double>(const Grid&, int, bool, int32_t*, double*);
template void knn_rows_cuda<int64_t, float>(const Grid&, int, bool, int64_t*, float*);
template void knn_rows_cuda<int64_t, double>(const Grid&, int, bool, int64_t*, double*);

}  // namespace scp
