// Minimal std::thread work sharing: chunks handed out through an atomic counter.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace scp {

inline int resolve_threads(int threads) {
  if (threads > 0) return threads;
  unsigned hw = std::thread::hardware_concurrency();
  return hw ? static_cast<int>(hw) : 1;
}

// Calls fn(lo, hi) on [begin, end) in chunks of `chunk`; the first exception is rethrown.
template <class Fn>
void parallel_for(int64_t begin, int64_t end, int64_t chunk, int threads, Fn&& fn) {
  if (end <= begin) return;
  chunk = std::max<int64_t>(chunk, 1);
  const int64_t nchunks = (end - begin + chunk - 1) / chunk;
  const int nt = static_cast<int>(std::min<int64_t>(resolve_threads(threads), nchunks));
  if (nt <= 1) {
    fn(begin, end);
    return;
  }
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto worker = [&]() {
    try {
      for (int64_t c = next++; c < nchunks; c = next++) {
        const int64_t lo = begin + c * chunk;
        fn(lo, std::min(end, lo + chunk));
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      next = nchunks;
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(nt - 1);
  for (int t = 1; t < nt; ++t) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace scp
