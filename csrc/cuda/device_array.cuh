// Helpers shared by the CUDA twins: error checks that throw, and a device buffer freed on scope exit
// (so a failed launch does not leak).
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace scp {
namespace cuda {

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string("CUDA ") + what + ": " + cudaGetErrorString(err));
}

template <class T>
struct DeviceArray {
  T* ptr = nullptr;
  explicit DeviceArray(size_t count) { check(cudaMalloc(&ptr, count * sizeof(T) + 1), "cudaMalloc"); }
  DeviceArray(const T* host, size_t count) : DeviceArray(count) {
    check(cudaMemcpy(ptr, host, count * sizeof(T), cudaMemcpyHostToDevice), "copy to device");
  }
  ~DeviceArray() { cudaFree(ptr); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
};

}  // namespace cuda
}  // namespace scp
