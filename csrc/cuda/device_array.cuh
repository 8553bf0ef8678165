// Helpers shared by the CUDA twins: error checks that throw, a device buffer freed on scope exit (so a failed
// launch does not leak), and the checks of caller-owned device arrays (the `*_on_device` entry points).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>

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

// The stream a caller named as an integer (__cuda_array_interface__'s convention: 0 the default stream, 1 the
// legacy default stream, 2 the per-thread default stream, else a cudaStream_t's value).
inline cudaStream_t as_stream(std::uintptr_t stream) { return reinterpret_cast<cudaStream_t>(stream); }

// Caller-owned arrays (name, pointer; null pointers are skipped) must all be device (or managed) memory of one
// GPU. That GPU is made current for the object's lifetime, the previous one restored afterwards. Throws
// std::invalid_argument naming the first array that is host memory or on another GPU.
class OnOneDevice {
 public:
  OnOneDevice(std::initializer_list<std::pair<const char*, const void*>> arrays) {
    if (cudaGetDevice(&previous_) != cudaSuccess) {
      cudaGetLastError();
      throw std::runtime_error("no CUDA device is visible");
    }
    const char* first = nullptr;
    for (const auto& [name, ptr] : arrays) {
      if (ptr == nullptr) continue;
      cudaPointerAttributes attr{};
      if (cudaPointerGetAttributes(&attr, ptr) != cudaSuccess) {
        cudaGetLastError();
        attr.type = cudaMemoryTypeUnregistered;
      }
      if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged) {
        throw std::invalid_argument(std::string(name) + " is not CUDA device memory");
      }
      if (first == nullptr) {
        first = name;
        device_ = attr.device;
      } else if (attr.device != device_) {
        throw std::invalid_argument(std::string(name) + " is on CUDA device " + std::to_string(attr.device) +
                                    " but " + first + " on device " + std::to_string(device_));
      }
    }
    if (first != nullptr && device_ != previous_) check(cudaSetDevice(device_), "set device");
  }
  ~OnOneDevice() {
    if (device_ >= 0 && device_ != previous_) cudaSetDevice(previous_);
  }
  OnOneDevice(const OnOneDevice&) = delete;
  OnOneDevice& operator=(const OnOneDevice&) = delete;

 private:
  int previous_ = 0;
  int device_ = -1;
};

}  // namespace cuda
}  // namespace scp
