// The one dispatch point: validates arguments, builds the grid and picks the CPU or CUDA driver.
#include <stdexcept>
#include <string>

#include "backend.h"
#include "grid.h"
#include "parallel.h"
#include "spatial.h"

namespace scp {

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::CPU;
  if (name == "cuda") return Device::CUDA;
  throw std::invalid_argument("unknown device '" + name + "' (expected 'cpu' or 'cuda')");
}

bool cuda_compiled() {
#ifdef SCPROSPATIAL_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int cuda_device_count() {
#ifdef SCPROSPATIAL_WITH_CUDA
  return cuda_device_count_impl();
#else
  return 0;
#endif
}

template <class I, class D>
void knn_graph(const double* pts, int64_t n, int dim, int k, bool include_self, int threads, Device device,
               I* indptr, I* indices, D* distances) {
  check_points(pts, n, dim);
  if (k < 1) throw std::invalid_argument("k must be at least 1, got " + std::to_string(k));
  if (n < static_cast<int64_t>(k) + 1) {
    throw std::invalid_argument("k=" + std::to_string(k) + " neighbours need at least " + std::to_string(k + 1) +
                                " points, got " + std::to_string(n));
  }
  const int64_t width = k + (include_self ? 1 : 0);
  for (int64_t i = 0; i <= n; ++i) indptr[i] = static_cast<I>(i * width);
  if (device == Device::CPU) {
    knn_rows_cpu(pts, n, dim, k, include_self, threads, indices, distances);
    return;
  }
#ifdef SCPROSPATIAL_WITH_CUDA
  if (k > kCudaMaxK) throw std::invalid_argument("the CUDA kernel supports k <= " + std::to_string(kCudaMaxK));
  knn_rows_cuda(build_grid_knn(pts, n, dim, knn_cell_occupancy(k, dim), threads), k, include_self, indices,
                distances);
#else
  throw std::runtime_error("scprospatial was built without CUDA (rebuild with SCPROSPATIAL_CUDA=1)");
#endif
}

#define SCP_INSTANTIATE(I, D)                                                                             \
  template void knn_graph<I, D>(const double*, int64_t, int, int, bool, int, Device, I*, I*, D*);
SCP_INSTANTIATE(int32_t, float)
SCP_INSTANTIATE(int32_t, double)
SCP_INSTANTIATE(int64_t, float)
SCP_INSTANTIATE(int64_t, double)
#undef SCP_INSTANTIATE

}  // namespace scp

// ---- blocked top-k similarity (mapping scRNA-seq cells onto imaged cells) ----
#include "topk.h"

namespace scp {

void topk_similarity(const float* query, int64_t nq, const float* ref, int64_t nr, int dim, int k, int threads,
                     int64_t* indices, float* similarities, Device device) {
  if (dim < 1) throw std::invalid_argument("embedding dimension must be at least 1");
  if (k < 1) throw std::invalid_argument("k must be at least 1, got " + std::to_string(k));
  if (nr < k) {
    throw std::invalid_argument("k=" + std::to_string(k) + " needs at least " + std::to_string(k) +
                                " reference rows, got " + std::to_string(nr));
  }
  if (device == Device::CPU) {
    topk_rows_cpu(query, nq, ref, nr, dim, k, threads, indices, similarities);
    return;
  }
#ifdef SCPROSPATIAL_WITH_CUDA
  topk_rows_cuda(query, nq, ref, nr, dim, k, indices, similarities);
#else
  throw std::runtime_error("scprospatial was built without CUDA (rebuild with SCPROSPATIAL_CUDA=1)");
#endif
}

}  // namespace scp
