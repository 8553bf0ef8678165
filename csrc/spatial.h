// Public C++ API of the spatial graph core (Python-free). One dispatch point picks CPU or CUDA.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace scp {

enum class Device { CPU, CUDA };

constexpr int kCudaKnnMaxK = 64;  // largest k of the CUDA kNN kernel (its candidate list lives in registers)

Device parse_device(const std::string& name);  // "cpu" | "cuda"
bool cuda_compiled();
int cuda_device_count();  // 0 when built without CUDA or no device is visible

// k-nearest-neighbour graph of n points (row-major n x dim, dim 2 or 3) as CSR with
// (k + include_self) entries per row, sorted by distance, ties by index; self first when included.
// Outputs are caller-owned: indptr n + 1, indices and distances n * (k + include_self).
template <class I, class D>
void knn_graph(const double* pts, int64_t n, int dim, int k, bool include_self, int threads, Device device,
               I* indptr, I* indices, D* distances);

// Radius graph in two phases so the caller can allocate the outputs once nnz is known:
// construct (search), then fill(). Rows sorted by distance, ties by index; self first when included.
class RadiusGraph {
 public:
  RadiusGraph(const double* pts, int64_t n, int dim, double radius, bool include_self, int threads);
  ~RadiusGraph();
  int64_t n() const;
  int64_t nnz() const;
  template <class I, class D>
  void fill(I* indptr, I* indices, D* distances) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace scp
