// CPU blocked top-k inner product: query blocks run in parallel; each block scans the reference in
// cache-sized blocks, scores a (query block x reference block) tile, and pushes into per-row min-heaps.
#include <algorithm>
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

void query_block(const float* query, int64_t q0, int64_t q1, const float* ref, int64_t nr, int dim, int k,
                 int64_t ref_block, int64_t* indices, float* sims) {
  const int64_t nq = q1 - q0;
  std::vector<std::vector<Entry>> heaps(nq);
  for (auto& h : heaps) h.reserve(k);
  std::vector<float> tile(nq * ref_block);
  std::vector<float> ref_t(static_cast<int64_t>(dim) * ref_block);  // reference block, dim-major
  for (int64_t r0 = 0; r0 < nr; r0 += ref_block) {
    const int64_t r1 = std::min(nr, r0 + ref_block);
    const int64_t nb = r1 - r0;
    for (int64_t b = 0; b < nb; ++b) {
      const float* rb = ref + (r0 + b) * dim;
      for (int d = 0; d < dim; ++d) ref_t[d * nb + b] = rb[d];
    }
    // Sums run over d in order for every pair (vectorised across reference rows, no reassociation),
    // so a similarity does not depend on the blocking or the thread count.
    for (int64_t a = 0; a < nq; ++a) {
      const float* qa = query + (q0 + a) * dim;
      float* out = tile.data() + a * nb;
      std::fill(out, out + nb, 0.f);
      for (int d = 0; d < dim; ++d) {
        const float qd = qa[d];
        const float* col = ref_t.data() + d * nb;
        for (int64_t b = 0; b < nb; ++b) out[b] += qd * col[b];
      }
    }
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
  parallel_for(0, nq, kQueryBlock, threads, [&](int64_t lo, int64_t hi) {
    for (int64_t q0 = lo; q0 < hi; q0 += kQueryBlock) {
      query_block(query, q0, std::min(hi, q0 + kQueryBlock), ref, nr, dim, k, ref_block, indices, similarities);
    }
  });
}

}  // namespace scp
