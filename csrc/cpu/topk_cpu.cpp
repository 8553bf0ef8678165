// CPU blocked top-k inner product. Query blocks run in parallel; each block scans the reference in panels
// (rows packed dim-major, so a panel is a few vector loads per dimension), scores a register tile of
// (query rows x panel rows) and compares it with every row's current k-th best in registers: only scores
// that beat it (rare after the first panels) leave the registers for the row's heap.
//
// Every score is one fused multiply-add chain over d in order, s = fma(q[d], r[d], s) from 0, in every
// code path (AVX-512, AVX2+FMA, portable), so results do not depend on the instruction set, the blocking
// or the thread count, and equal the CUDA kernel's. The instruction set is picked at run time; the
// library itself is built for baseline x86-64.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "parallel.h"
#include "topk.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SCP_X86 1
#endif

namespace scp {

namespace {

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

// Running top-k of the rows of one query block: per row a heap and the score a candidate must exceed.
// References arrive in increasing index order, so a score equal to the k-th best never beats it.
struct RowHeaps {
  RowHeaps(int64_t rows, int k)
      : k(k), heap(static_cast<size_t>(rows) * k), size(rows, 0),
        thr(rows, -std::numeric_limits<float>::infinity()) {}
  int k;
  std::vector<Entry> heap;
  std::vector<int> size;
  std::vector<float> thr;

  void push(int64_t row, float sim, int64_t idx) {
    Entry* h = heap.data() + row * k;
    int& n = size[row];
    const Entry e{sim, idx};
    if (n < k) {
      h[n++] = e;
      std::push_heap(h, h + n, Worse());
    } else if (better(e, h[0])) {
      std::pop_heap(h, h + n, Worse());
      h[n - 1] = e;
      std::push_heap(h, h + n, Worse());
    }
    if (n == k) thr[row] = h[0].sim;
  }

  // Scores of `row` against references idx0 + j for the set bits j of mask (references past nr are padding).
  void offer(int64_t row, const float* scores, uint32_t mask, int64_t idx0, int64_t nr) {
    while (mask) {
      const int j = __builtin_ctz(mask);
      mask &= mask - 1;
      if (idx0 + j < nr && scores[j] > thr[row]) push(row, scores[j], idx0 + j);
    }
  }

  void write(int64_t row, int64_t* indices, float* sims) {
    Entry* h = heap.data() + row * k;
    std::sort(h, h + size[row], better);
    for (int t = 0; t < k; ++t) {
      indices[t] = h[t].idx;
      sims[t] = h[t].sim;
    }
  }
};

// The reference in panels of nr_panel rows, each stored dim-major (zero rows pad the last panel).
std::vector<float> pack_panels(const float* ref, int64_t nr, int dim, int nr_panel, int threads) {
  const int64_t panels = (nr + nr_panel - 1) / nr_panel;
  std::vector<float> packed(static_cast<size_t>(panels) * dim * nr_panel, 0.0f);
  parallel_for(0, panels, 256, threads, [&](int64_t lo, int64_t hi) {
    for (int64_t p = lo; p < hi; ++p) {
      float* dst = packed.data() + p * dim * nr_panel;
      const int64_t rows = std::min<int64_t>(nr_panel, nr - p * nr_panel);
      for (int64_t j = 0; j < rows; ++j) {
        const float* src = ref + (p * nr_panel + j) * dim;
        for (int d = 0; d < dim; ++d) dst[d * nr_panel + j] = src[d];
      }
    }
  });
  return packed;
}

// Query rows q0 .. q0 + mr of a block as an MR-row tile (rows past mr zero), so edge tiles take the fast path.
const float* tile_rows(const float* query, int64_t q0, int64_t mr, int MR, int dim, std::vector<float>& pad) {
  if (mr == MR) return query + q0 * dim;
  pad.assign(static_cast<size_t>(MR) * dim, 0.0f);
  std::memcpy(pad.data(), query + q0 * dim, sizeof(float) * mr * dim);
  return pad.data();
}

// Scores an MR x NR tile (query rows q, row-major; one packed panel) and compares each row with its
// threshold: masks[i] has bit j set when score (i, j) beats thr[i]; only such rows are written to scores.
using TileFn = void (*)(const float* q, int dim, const float* panel, const float* thr, float* scores,
                        uint32_t* masks);

// Query blocks of MB rows in parallel, each scanning every panel of the reference in order.
void run_blocks(const float* query, int64_t nq, const float* ref, int64_t nr, int dim, int k, int threads,
                int64_t* indices, float* similarities, int MR, int NR, TileFn tile) {
  const std::vector<float> packed = pack_panels(ref, nr, dim, NR, threads);
  const int64_t panels = (nr + NR - 1) / NR;
  const int64_t MB = 8 * MR;  // query rows per task: one panel is reused by 8 tiles while in L1
  parallel_for(0, nq, MB, threads, [&](int64_t lo, int64_t hi) {
    RowHeaps heaps(MB, k);
    std::vector<float> pad, scores(static_cast<size_t>(MR) * NR);
    std::vector<uint32_t> masks(MR);
    for (int64_t b0 = lo; b0 < hi; b0 += MB) {
      const int64_t rows = std::min(MB, hi - b0);
      std::fill(heaps.size.begin(), heaps.size.end(), 0);
      std::fill(heaps.thr.begin(), heaps.thr.end(), -std::numeric_limits<float>::infinity());
      for (int64_t p = 0; p < panels; ++p) {
        const float* panel = packed.data() + p * dim * NR;
        for (int64_t t = 0; t < rows; t += MR) {
          const int64_t mr = std::min<int64_t>(MR, rows - t);
          tile(tile_rows(query, b0 + t, mr, MR, dim, pad), dim, panel, heaps.thr.data() + t, scores.data(),
               masks.data());
          for (int64_t i = 0; i < mr; ++i) {
            if (masks[i]) heaps.offer(t + i, scores.data() + i * NR, masks[i], p * NR, nr);
          }
        }
      }
      for (int64_t r = 0; r < rows; ++r) heaps.write(r, indices + (b0 + r) * k, similarities + (b0 + r) * k);
    }
  });
}

// Portable path: 4 x 8 tiles, one score at a time (std::fma rounds like the vector FMA instructions).
void tile_portable(const float* q, int dim, const float* panel, const float* thr, float* scores, uint32_t* masks) {
  constexpr int MR = 4, NR = 8;
  for (int i = 0; i < MR; ++i) {
    uint32_t mask = 0;
    for (int j = 0; j < NR; ++j) {
      float acc = 0.0f;
      for (int d = 0; d < dim; ++d) acc = std::fma(q[i * dim + d], panel[d * NR + j], acc);
      scores[i * NR + j] = acc;
      mask |= static_cast<uint32_t>(acc > thr[i]) << j;
    }
    masks[i] = mask;
  }
}

#ifdef SCP_X86
// AVX2 + FMA: 6 x 16 tiles, 12 accumulators.
__attribute__((target("avx2,fma"))) void tile_avx2(const float* q, int dim, const float* panel, const float* thr,
                                                    float* scores, uint32_t* masks) {
  constexpr int MR = 6;
  __m256 acc[MR][2];
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (int d = 0; d < dim; ++d) {
    const __m256 r0 = _mm256_loadu_ps(panel + d * 16), r1 = _mm256_loadu_ps(panel + d * 16 + 8);
    for (int i = 0; i < MR; ++i) {
      const __m256 qv = _mm256_broadcast_ss(q + i * dim + d);
      acc[i][0] = _mm256_fmadd_ps(qv, r0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(qv, r1, acc[i][1]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    const __m256 t = _mm256_broadcast_ss(thr + i);
    masks[i] = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(acc[i][0], t, _CMP_GT_OQ))) |
               static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(acc[i][1], t, _CMP_GT_OQ))) << 8;
    if (masks[i]) {
      _mm256_storeu_ps(scores + i * 16, acc[i][0]);
      _mm256_storeu_ps(scores + i * 16 + 8, acc[i][1]);
    }
  }
}

// AVX-512: 12 x 32 tiles, 24 accumulators.
__attribute__((target("avx512f"))) void tile_avx512(const float* q, int dim, const float* panel, const float* thr,
                                                     float* scores, uint32_t* masks) {
  constexpr int MR = 12;
  __m512 acc[MR][2];
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int d = 0; d < dim; ++d) {
    const __m512 r0 = _mm512_loadu_ps(panel + d * 32), r1 = _mm512_loadu_ps(panel + d * 32 + 16);
    for (int i = 0; i < MR; ++i) {
      const __m512 qv = _mm512_set1_ps(q[i * dim + d]);
      acc[i][0] = _mm512_fmadd_ps(qv, r0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(qv, r1, acc[i][1]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    const __m512 t = _mm512_set1_ps(thr[i]);
    masks[i] = static_cast<uint32_t>(_mm512_cmp_ps_mask(acc[i][0], t, _CMP_GT_OQ)) |
               static_cast<uint32_t>(_mm512_cmp_ps_mask(acc[i][1], t, _CMP_GT_OQ)) << 16;
    if (masks[i]) {
      _mm512_storeu_ps(scores + i * 32, acc[i][0]);
      _mm512_storeu_ps(scores + i * 32 + 16, acc[i][1]);
    }
  }
}
#endif

}  // namespace

std::string topk_isa() {
  // SCPROSPATIAL_TOPK_ISA=portable|avx2|avx512 caps the choice (tests compare the paths; results are equal).
  const char* cap = std::getenv("SCPROSPATIAL_TOPK_ISA");
  const std::string want = cap ? cap : "avx512";
#ifdef SCP_X86
  __builtin_cpu_init();
  if (want == "avx512" && __builtin_cpu_supports("avx512f")) return "avx512";
  if (want != "portable" && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "avx2";
#endif
  return "portable";
}

void topk_rows_cpu(const float* query, int64_t nq, const float* ref, int64_t nr, int dim, int k, int threads,
                   int64_t* indices, float* similarities) {
  const std::string isa = topk_isa();
  int MR = 4, NR = 8;
  TileFn tile = tile_portable;
#ifdef SCP_X86
  if (isa == "avx512") MR = 12, NR = 32, tile = tile_avx512;
  if (isa == "avx2") MR = 6, NR = 16, tile = tile_avx2;
#endif
  run_blocks(query, nq, ref, nr, dim, k, threads, indices, similarities, MR, NR, tile);
}

}  // namespace scp
