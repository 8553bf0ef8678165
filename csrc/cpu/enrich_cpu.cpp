// Neighbourhood-enrichment permutations on the CPU: per permutation a Fisher-Yates shuffle of compact labels
// (uint8 up to 254 types, so a million cells' labels stay in cache) and one pass over the edges.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "parallel.h"
#include "stats.h"

namespace scp {
namespace {

inline uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// xoshiro256** (Blackman & Vigna), seeded through splitmix64.
struct Rng {
  uint64_t s[4];
  Rng(uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (0xD1B54A32D192ED03ULL * (stream + 1));
    for (auto& v : s) v = splitmix64(x);
  }
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t next() {
    const uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
  }
  // Uniform in [0, range), range < 2^32 (Lemire's multiply-and-reject).
  uint32_t below(uint32_t range) {
    uint64_t m = (next() >> 32) * range;
    uint32_t low = static_cast<uint32_t>(m);
    if (low < range) {
      const uint32_t floor = static_cast<uint32_t>(-range) % range;
      while (low < floor) {
        m = (next() >> 32) * range;
        low = static_cast<uint32_t>(m);
      }
    }
    return static_cast<uint32_t>(m >> 32);
  }
};

constexpr int kLanes = 8;  // permutations counted together in one pass over the edges

// Fisher-Yates shuffle of v[0..m) with the swap partners drawn a block ahead and prefetched: the shuffle reads
// its buffer at random, and a million labels do not fit in L2.
template <class L>
void shuffle(L* v, int64_t m, Rng& rng) {
  constexpr int64_t kBlock = 64;
  uint32_t j[kBlock];
  for (int64_t hi = m - 1; hi > 0; hi -= kBlock) {
    const int64_t lo = std::max<int64_t>(0, hi - kBlock);  // swaps i = hi .. lo+1
    for (int64_t i = hi; i > lo; --i) {
      j[hi - i] = rng.below(static_cast<uint32_t>(i + 1));
      __builtin_prefetch(v + j[hi - i], 1);
    }
    for (int64_t i = hi; i > lo; --i) std::swap(v[i], v[j[hi - i]]);
  }
}

template <class L>
struct Enrichment {
  const int64_t *indptr, *indices, *members, *offsets;
  int64_t n, n_groups;
  int t1;                    // n_types + 1: label n_types marks a missing label
  bool in_place;             // one group holding every cell in order: shuffle the labels themselves
  std::vector<L> base;       // labels, missing -> n_types
  std::vector<L> base_vals;  // labels of `members`, in order

  // Labels after permutation p into lab (n), vals: scratch of len(members).
  void permute(int64_t p, uint64_t seed, L* lab, std::vector<L>& vals) const {
    Rng rng(seed, static_cast<uint64_t>(p));
    std::memcpy(lab, base.data(), sizeof(L) * n);
    if (in_place) {
      shuffle(lab, n, rng);
      return;
    }
    std::memcpy(vals.data(), base_vals.data(), sizeof(L) * base_vals.size());
    for (int64_t g = 0; g < n_groups; ++g) shuffle(vals.data() + offsets[g], offsets[g + 1] - offsets[g], rng);
    for (size_t i = 0; i < base_vals.size(); ++i) lab[members[i]] = vals[i];
  }

  // Edge counts between label pairs ((t1 x t1), missing included) of permutations p0 .. p0+kLanes-1 (those below
  // n_perms) into count (kLanes x t1 x t1). The lanes' labels are interleaved (cell i's kLanes labels side by
  // side), so one pass over the edges and one random read per neighbour serve every lane.
  void counts(int64_t p0, int64_t n_perms, uint64_t seed, std::vector<L>& lane, std::vector<L>& inter,
              std::vector<L>& vals, std::vector<uint32_t>& bins, std::vector<int64_t>& count) const {
    const int lanes = static_cast<int>(std::min<int64_t>(kLanes, n_perms - p0));
    for (int q = 0; q < kLanes; ++q) {
      if (q < lanes) permute(p0 + q, seed, lane.data(), vals);
      else std::memcpy(lane.data(), base.data(), sizeof(L) * n);  // unused lane
      for (int64_t i = 0; i < n; ++i) inter[i * kLanes + q] = lane[i];
    }
    const int64_t tt = static_cast<int64_t>(t1) * t1;
    std::fill(bins.begin(), bins.end(), 0u);
    uint32_t* h = bins.data();
    const L* lab = inter.data();
    constexpr int64_t kAhead = 4;  // rows whose neighbours' labels are prefetched ahead (they are read at random)
    int64_t unflushed = 0;         // edges counted into the uint32 bins since they were last emptied
    for (int64_t i = 0; i < n; ++i) {
      if (i + kAhead < n) {
        for (int64_t k = indptr[i + kAhead]; k < indptr[i + kAhead + 1]; ++k) {
          __builtin_prefetch(lab + indices[k] * kLanes);
        }
      }
      uint32_t* row[kLanes];
      for (int q = 0; q < kLanes; ++q) row[q] = h + q * tt + static_cast<int64_t>(lab[i * kLanes + q]) * t1;
      const int64_t hi = indptr[i + 1];
      for (int64_t k = indptr[i]; k < hi; ++k) {
        const L* nb = lab + indices[k] * kLanes;
        for (int q = 0; q < kLanes; ++q) ++row[q][nb[q]];
      }
      unflushed += hi - indptr[i];
      if (unflushed > (int64_t(1) << 31)) {  // uint32 bins cannot overflow
        flush(bins, count, lanes);
        unflushed = 0;
      }
    }
    flush(bins, count, lanes);
  }

  // Adds the uint32 bins into count and clears them.
  void flush(std::vector<uint32_t>& bins, std::vector<int64_t>& count, int lanes) const {
    const int64_t tt = static_cast<int64_t>(t1) * t1;
    for (int q = 0; q < lanes; ++q) {
      for (int64_t b = 0; b < tt; ++b) count[q * tt + b] += bins[q * tt + b];
    }
    std::fill(bins.begin(), bins.end(), 0u);
  }
};

template <class L>
void run(const int64_t* indptr, const int64_t* indices, int64_t n, const int32_t* codes, const int64_t* members,
         const int64_t* offsets, int64_t n_groups, int n_types, int64_t n_perms, uint64_t seed, int threads,
         double* mean, double* sd) {
  Enrichment<L> e{indptr, indices, members, offsets, n, n_groups, n_types + 1, false, {}, {}};
  e.base.resize(n);
  for (int64_t i = 0; i < n; ++i) e.base[i] = static_cast<L>(codes[i] < 0 ? n_types : codes[i]);
  const int64_t n_members = n_groups > 0 ? offsets[n_groups] : 0;
  e.in_place = n_groups == 1 && n_members == n;
  for (int64_t i = 0; e.in_place && i < n; ++i) e.in_place = members[i] == i;
  if (!e.in_place) {
    e.base_vals.resize(n_members);
    for (int64_t i = 0; i < n_members; ++i) e.base_vals[i] = e.base[members[i]];
  }
  const int64_t tt = static_cast<int64_t>(n_types + 1) * (n_types + 1);
  std::vector<int64_t> first(tt), s1(tt, 0);
  std::vector<long double> s2(tt, 0.0L);
  std::mutex merge;
  bool have_first = false;
  // sums of (count - first permutation's count): small integers, exact whatever the order of the batches
  auto batches = [&](int64_t lo, int64_t hi) {
    std::vector<L> lane(n), inter(n * kLanes), vals(e.base_vals.size());
    std::vector<uint32_t> bins(kLanes * tt);
    std::vector<int64_t> c(kLanes * tt), a1(tt, 0);
    std::vector<long double> a2(tt, 0.0L);
    for (int64_t batch = lo; batch < hi; ++batch) {
      const int64_t p0 = batch * kLanes;
      std::fill(c.begin(), c.end(), 0);
      e.counts(p0, n_perms, seed, lane, inter, vals, bins, c);
      if (!have_first) {
        std::copy(c.begin(), c.begin() + tt, first.begin());
        have_first = true;
      }
      for (int64_t q = 0; q < std::min<int64_t>(kLanes, n_perms - p0); ++q) {
        for (int64_t b = 0; b < tt; ++b) {
          const int64_t d = c[q * tt + b] - first[b];
          a1[b] += d;
          a2[b] += static_cast<long double>(d) * static_cast<long double>(d);
        }
      }
    }
    std::lock_guard<std::mutex> lock(merge);
    for (int64_t b = 0; b < tt; ++b) {
      s1[b] += a1[b];
      s2[b] += a2[b];
    }
  };
  const int64_t n_batches = (n_perms + kLanes - 1) / kLanes;
  batches(0, 1);  // the first batch alone: it sets the shift
  parallel_for(1, n_batches, 1, threads, batches);
  const long double np = static_cast<long double>(n_perms);
  for (int a = 0; a < n_types; ++a) {
    for (int b = 0; b < n_types; ++b) {
      const int64_t k = static_cast<int64_t>(a) * (n_types + 1) + b;
      const long double m1 = s1[k] / np;
      mean[a * n_types + b] = static_cast<double>(first[k] + m1);
      sd[a * n_types + b] = static_cast<double>(std::sqrt(std::max(0.0L, s2[k] / np - m1 * m1)));
    }
  }
}

}  // namespace

void enrichment_null(const int64_t* indptr, const int64_t* indices, int64_t n, const int32_t* codes,
                     const int64_t* members, const int64_t* offsets, int64_t n_groups, int n_types, int64_t n_perms,
                     uint64_t seed, int threads, double* mean, double* sd) {
  if (n_types < 1) throw std::invalid_argument("n_types must be at least 1");
  if (n_perms < 1) throw std::invalid_argument("n_perms must be at least 1");
  if (n >= (int64_t(1) << 32)) throw std::invalid_argument("more than 2^32 cells");
  for (int64_t i = 0; i < n; ++i) {
    if (codes[i] >= n_types || codes[i] < -1) {
      throw std::out_of_range("label " + std::to_string(codes[i]) + " of cell " + std::to_string(i) +
                              " is outside [-1, " + std::to_string(n_types) + ")");
    }
  }
  const int64_t nnz = indptr[n];
  for (int64_t k = 0; k < nnz; ++k) {
    if (indices[k] < 0 || indices[k] >= n) {
      throw std::out_of_range("column index " + std::to_string(indices[k]) + " is outside [0, " + std::to_string(n) +
                              ")");
    }
  }
  const int64_t n_members = n_groups > 0 ? offsets[n_groups] : 0;
  for (int64_t i = 0; i < n_members; ++i) {
    if (members[i] < 0 || members[i] >= n) throw std::out_of_range("member " + std::to_string(members[i]));
  }
  if (n_types < 255) {
    run<uint8_t>(indptr, indices, n, codes, members, offsets, n_groups, n_types, n_perms, seed, threads, mean, sd);
  } else if (n_types < 65535) {
    run<uint16_t>(indptr, indices, n, codes, members, offsets, n_groups, n_types, n_perms, seed, threads, mean, sd);
  } else {
    run<uint32_t>(indptr, indices, n, codes, members, offsets, n_groups, n_types, n_perms, seed, threads, mean, sd);
  }
}

}  // namespace scp
