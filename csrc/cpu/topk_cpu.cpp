// CPU blocked top-k inner product: query blocks run in parallel; each block scans the reference in
// cache-sized blocks, scores a (query block x reference block) tile, and pushes into per-row min-heaps.
#include <algorithm>
#include <cstring>
#include <vector>

#include "parallel.h"
#include "topk.h"

namespace scp {

namespace {

constexpr int64_t kQueryBlock = 32;   // query rows per task (a tile's rows)
constexpr int64_t kRefBlockBytes = 256 * 1024;  // reference rows per tile: ~L2-sized

struct Entry {
  float sim;
  int64_t idx;
};

// "a ranks before b": larger similarity, then smaller index.
inline bool better(const Entry& a, const Entry& b) { return a.sim > b.sim || (a.sim == b.sim && a.idx < b.idx); }

// Heap ordered so that the front is the worst kept entry.
struct Worse {
  bool operator()(const Entry& a, const Entry& b) const { return better(a, b); }
};

inline void push(std::vector<Entry>& heap, int k, Entry e) {
  if (static_cast<int>(heap.size()) < k) {
    heap.push_back(e);
    std::push_heap(heap.begin(), heap.end(), Worse());
  } else if (better(e, heap.front())) {
    std::pop_heap(heap.begin(), heap.end(), Worse());
    heap.back() = e;
    std::push_heap(heap.begin(), heap.end(), Worse());
  }
}

// Scores of nq query rows against a dim-major reference block of nb rows into tile (nq x nb).
// Register tiles of kMR x kNR pairs; every pair's sum runs over d in order (no reassociation), so a
// similarity does not depend on the blocking, the tile edge or the thread count.
constexpr int kMR = 4;
constexpr int kNR = 8;  // 4 x 8 pairs = 8 vector accumulators: fits the 16 SSE registers without spilling

// 4-wide float vector (GCC/Clang vector extension: SSE on x86-64, NEON on arm64).
typedef float v4 __attribute__((vector_size(16)));

inline v4 load4(const float* p) {
  v4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// A full kMR x kNR tile: kMR * kNR / 4 vector accumulators in registers.
inline void micro_full(const float* q, int dim, const float* ref_t, int64_t nb, int64_t b0, float* out) {
  constexpr int NV = kNR / 4;
  v4 acc[kMR][NV] = {};
  for (int d = 0; d < dim; ++d) {
    const float* c = ref_t + d * nb + b0;
    v4 cv[NV];
    for (int j = 0; j < NV; ++j) cv[j] = load4(c + 4 * j);
    for (int i = 0; i < kMR; ++i) {
      const float qd = q[i * dim + d];
      const v4 qv = {qd, qd, qd, qd};
      for (int j = 0; j < NV; ++j) acc[i][j] += qv * cv[j];
    }
  }
  for (int i = 0; i < kMR; ++i)
    for (int j = 0; j < NV; ++j) std::memcpy(out + i * nb + b0 + 4 * j, &acc[i][j], sizeof(v4));
}

// Tile edges: the same sums in the same order, one pair at a time.
inline void micro_edge(const float* q, int dim, const float* ref_t, int64_t nb, int64_t b0, int mr, int nr,
                       float* out) {
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) {
      float s = 0.f;
      for (int d = 0; d < dim; ++d) s += q[i * dim + d] * ref_t[d * nb + b0 + j];
      out[i * nb + b0 + j] = s;
    }
}

void score_tile(const float* q, int64_t nq, const float* ref_t, int64_t nb, int dim, float* tile) {
  for (int64_t a = 0; a < nq; a += kMR) {
    const int mr = static_cast<int>(std::min<int64_t>(kMR, nq - a));
    for (int64_t b0 = 0; b0 < nb; b0 += kNR) {
      const int nr = static_cast<int>(std::min<int64_t>(kNR, nb - b0));
      if (mr == kMR && nr == kNR) {
        micro_full(q + a * dim, dim, ref_t, nb, b0, tile + a * nb);
      } else {
        micro_edge(q + a * dim, dim, ref_t, nb, b0, mr, nr, tile + a * nb);
      }
    }
  }
}

// packed: the reference in blocks of ref_block rows, each block stored dim-major (packed once, shared).
void query_block(const float* query, int64_t q0, int64_t q1, const float* packed, int64_t nr, int dim, int k,
                 int64_t ref_block, int64_t* indices, float* sims) {
  const int64_t nq = q1 - q0;
  std::vector<std::vector<Entry>> heaps(nq);
  for (auto& h : heaps) h.reserve(k);
  std::vector<float> tile(nq * ref_block);
  for (int64_t r0 = 0; r0 < nr; r0 += ref_block) {
    const int64_t nb = std::min(nr, r0 + ref_block) - r0;
    const float* ref_t = packed + r0 * dim;
    score_tile(query + q0 * dim, nq, ref_t, nb, dim, tile.data());
    for (int64_t a = 0; a < nq; ++a) {
      auto& heap = heaps[a];
      const float* row = tile.data() + a * nb;
      for (int64_t b = 0; b < nb; ++b) {
        // Cheap reject against the current worst before touching the heap.
        if (static_cast<int>(heap.size()) == k && row[b] < heap.front().sim) continue;
        push(heap, k, Entry{row[b], r0 + b});
      }
    }
  }
  for (int64_t a = 0; a < nq; ++a) {
    auto& heap = heaps[a];
    std::sort(heap.begin(), heap.end(), better);
    int64_t* oi = indices + (q0 + a) * k;
    float* os = sims + (q0 + a) * k;
    for (int t = 0; t < k; ++t) {
      oi[t] = heap[t].idx;
      os[t] = heap[t].sim;
    }
  }
}

}  // namespace

void topk_rows_cpu(const float* query, int64_t nq, const float* ref, int64_t nr, int dim, int k, int threads,
                   int64_t* indices, float* similarities) {
  const int64_t ref_block = std::max<int64_t>(64, kRefBlockBytes / (static_cast<int64_t>(dim) * 4));
  // One dim-major copy of the reference per block (a copy of the reference in all), so the scoring loop
  // reads contiguous columns; packing it once costs less than re-packing it for every query block.
  std::vector<float> packed(static_cast<size_t>(nr) * dim);
  parallel_for(0, nr, ref_block, threads, [&](int64_t lo, int64_t hi) {
    for (int64_t r0 = lo; r0 < hi; r0 += ref_block) {
      const int64_t nb = std::min(nr, r0 + ref_block) - r0;
      float* dst = packed.data() + r0 * dim;
      for (int d = 0; d < dim; ++d)
        for (int64_t b = 0; b < nb; ++b) dst[d * nb + b] = ref[(r0 + b) * dim + d];
    }
  });
  parallel_for(0, nq, kQueryBlock, threads, [&](int64_t lo, int64_t hi) {
    for (int64_t q0 = lo; q0 < hi; q0 += kQueryBlock) {
      query_block(query, q0, std::min(hi, q0 + kQueryBlock), packed.data(), nr, dim, k, ref_block, indices,
                  similarities);
    }
  });
}

}  // namespace scp
