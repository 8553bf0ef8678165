// The one dispatch point: validates arguments, builds the grid and picks the CPU or CUDA driver.
#include <stdexcept>
#include <string>

#include "backend.h"
#include "grid.h"
#include "parallel.h"
#include "spatial.h"

namespace scp {

const char* const kNoCuda = "scprospatial was built without CUDA (rebuild with SCPROSPATIAL_CUDA=1)";

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
  throw std::runtime_error(kNoCuda);
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

namespace {
void check_topk(int64_t nr, int dim, int k) {
  if (dim < 1) throw std::invalid_argument("embedding dimension must be at least 1");
  if (k < 1) throw std::invalid_argument("k must be at least 1, got " + std::to_string(k));
  if (nr < k) {
    throw std::invalid_argument("k=" + std::to_string(k) + " needs at least " + std::to_string(k) +
                                " reference rows, got " + std::to_string(nr));
  }
}
}  // namespace

void topk_similarity(const float* query, int64_t nq, const float* ref, int64_t nr, int dim, int k, int threads,
                     int64_t* indices, float* similarities, Device device) {
  check_topk(nr, dim, k);
  if (device == Device::CPU) {
    topk_rows_cpu(query, nq, ref, nr, dim, k, threads, indices, similarities);
    return;
  }
#ifdef SCPROSPATIAL_WITH_CUDA
  topk_rows_cuda(query, nq, ref, nr, dim, k, indices, similarities);
#else
  throw std::runtime_error(kNoCuda);
#endif
}

void topk_similarity_on_device(const float* query, int64_t nq, const float* ref, int64_t nr, int dim, int k,
                               int64_t* indices, float* similarities, std::uintptr_t stream) {
  check_topk(nr, dim, k);
#ifdef SCPROSPATIAL_WITH_CUDA
  topk_rows_cuda_resident(query, nq, ref, nr, dim, k, indices, similarities, stream);
#else
  (void)query, (void)nq, (void)ref, (void)indices, (void)similarities, (void)stream;
  throw std::runtime_error(kNoCuda);
#endif
}

}  // namespace scp

// ---- weighted gather-average of predicted profiles (mapping: the mixture over each cell's top-k) ----
#include <stdexcept>

#include "gather.h"

namespace scp {

namespace {
void check_gather(int64_t n, int k, int64_t m, int64_t p) {
  if (k < 1) throw std::invalid_argument("k must be at least 1, got " + std::to_string(k));
  if (n < 0 || m < 0 || p < 0) throw std::invalid_argument("negative array size");
}
}  // namespace

template <class W>
void gather_mixture(const int64_t* idx, const W* w, int64_t n, int k, const float* mean, const float* sd,
                    int64_t m, int64_t p, int threads, float* out_mean, float* out_var, bool out_sd, Device device) {
  check_gather(n, k, m, p);
  for (int64_t e = 0; e < n * k; ++e) {
    if (idx[e] < 0 || idx[e] >= m) {
      throw std::out_of_range("index " + std::to_string(idx[e]) + " (row " + std::to_string(e / k) + ", column " +
                              std::to_string(e % k) + ") is out of range for " + std::to_string(m) +
                              " profile rows");
    }
  }
  if (device == Device::CPU) {
    gather_rows_cpu(idx, w, n, k, mean, sd, p, threads, out_mean, out_var, out_sd);
    return;
  }
#ifdef SCPROSPATIAL_WITH_CUDA
  gather_rows_cuda(idx, w, n, k, mean, sd, m, p, out_mean, out_var, out_sd);
#else
  throw std::runtime_error(kNoCuda);
#endif
}

template <class W>
void gather_mixture_on_device(const int64_t* idx, const W* w, int64_t n, int k, const float* mean, const float* sd,
                              int64_t m, int64_t p, float* out_mean, float* out_var, bool out_sd,
                              std::uintptr_t stream) {
  check_gather(n, k, m, p);
#ifdef SCPROSPATIAL_WITH_CUDA
  gather_rows_cuda_resident(idx, w, n, k, mean, sd, m, p, out_mean, out_var, out_sd, stream);
#else
  (void)idx, (void)w, (void)mean, (void)sd, (void)out_mean, (void)out_var, (void)out_sd, (void)stream;
  throw std::runtime_error(kNoCuda);
#endif
}

template void gather_mixture_on_device<float>(const int64_t*, const float*, int64_t, int, const float*, const float*,
                                              int64_t, int64_t, float*, float*, bool, std::uintptr_t);
template void gather_mixture_on_device<double>(const int64_t*, const double*, int64_t, int, const float*,
                                               const float*, int64_t, int64_t, float*, float*, bool, std::uintptr_t);

template void gather_mixture<float>(const int64_t*, const float*, int64_t, int, const float*, const float*, int64_t,
                                    int64_t, int, float*, float*, bool, Device);
template void gather_mixture<double>(const int64_t*, const double*, int64_t, int, const float*, const float*,
                                     int64_t, int64_t, int, float*, float*, bool, Device);

}  // namespace scp
