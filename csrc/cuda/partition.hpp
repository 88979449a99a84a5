// Work decomposition of the fused-reduction kernels: pure index arithmetic shared by the device
// code and by host-side tests (tests/cuda_host/partition_test.cpp compiles this header with a
// plain C++ compiler, so every function here must stay free of CUDA types and intrinsics).
#pragma once
#include <cstdint>

#include "../hd.hpp"

namespace zc::cuda::part {

// ---- segmented saliency ------------------------------------------------------------------
// Segments of at most kSalDirectMax elements are reduced by one block each ("direct" mode);
// when a longer one exists the segments are cut into chunks of kSalChunk elements that blocks
// reduce independently, and a combine pass adds each segment's chunk partials in chunk order
// ("split" mode). Both are deterministic: no result depends on which block ran which item.
constexpr int64_t kSalChunk = 16384;
constexpr int64_t kSalDirectMax = 65536;

ZC_HD int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---- persistent grids ------------------------------------------------------------------------
// Blocks of a persistent launch: enough to fill every resident slot (`resident` = multiprocessors
// x resident blocks per multiprocessor), never more than there are work items, at least one, and
// at most `cap` when cap > 0. Block b then takes items b, b + grid, b + 2 grid, ... (so a cap
// below the work forces every block through several iterations: tests use it to reach the reuse
// of shared memory and reduction buffers across items on any card).
ZC_HD int64_t persistent_blocks(int64_t resident, int64_t work, int64_t cap) {
  int64_t g = resident;
  if (work < g) g = work;
  if (cap > 0 && cap < g) g = cap;
  return g < 1 ? 1 : g;
}

// Blocks of the weight initialiser: one segment per block and iteration, at most 8 blocks per
// multiprocessor (and at most `cap` when cap > 0).
constexpr int64_t kInitBlocksPerSm = 8;
ZC_HD int64_t init_blocks(int64_t sms, int64_t nseg, int64_t cap) {
  return persistent_blocks(sms * kInitBlocksPerSm, nseg, cap);
}

// chunks of a segment of `len` elements in split mode (an empty segment has none)
ZC_HD int64_t sal_chunks(int64_t len) { return len <= 0 ? 0 : ceil_div(len, kSalChunk); }

// Upper bound of the number of chunks over all segments: sum ceil(len_s / C) <= N / C + S.
ZC_HD int64_t sal_max_items(int64_t nseg, int64_t n) { return nseg + n / kSalChunk + 1; }

ZC_HD int64_t align_up(int64_t x, int64_t a) { return (x + a - 1) / a * a; }

// Split-mode workspace: cum (S+1 int64) | item_seg (max_items int32) | partial (max_items x 5
// float64), each part 256-byte aligned.
struct SalWorkspace {
  int64_t cum_off, item_off, partial_off, bytes;
};
ZC_HD SalWorkspace sal_workspace(int64_t nseg, int64_t n) {
  const int64_t items = sal_max_items(nseg, n);
  SalWorkspace w{};
  w.cum_off = 0;
  w.item_off = align_up((nseg + 1) * 8, 256);
  w.partial_off = w.item_off + align_up(items * 4, 256);
  w.bytes = w.partial_off + items * 5 * 8;
  return w;
}

// Range [a, b) of chunk j of the segment [s0, s1).
ZC_HD void sal_chunk_range(int64_t s0, int64_t s1, int64_t j, int64_t* a, int64_t* b) {
  *a = s0 + j * kSalChunk;
  const int64_t e = *a + kSalChunk;
  *b = e < s1 ? e : s1;
}

// ---- vector / scalar split of a range --------------------------------------------------------
// A range of `len` elements whose first element sits `phase` elements past a `vec`-element
// (16-byte) boundary: `head` scalar elements up to the boundary, `nvec` aligned vectors, `tail`
// scalar elements after them.
struct VecSplit {
  int64_t head, nvec, tail;
};
ZC_HD VecSplit vec_split(int64_t len, int64_t phase, int vec) {
  int64_t head = phase == 0 ? 0 : vec - phase;
  if (head > len) head = len;
  const int64_t nvec = (len - head) / vec;
  return VecSplit{head, nvec, len - head - nvec * vec};
}

// ---- fisher ---------------------------------------------------------------------------------
// Rows of fewer than kFisherSmallHW elements: one thread per (channel, batch group); longer rows:
// sub-warps of `fisher_width` lanes per (channel, sample) row.
constexpr int64_t kFisherSmallHW = 16;

// lanes per row: the smallest power of two >= the row's vector count, at most a warp
ZC_HD int fisher_width(int64_t nvec_row) {
  int w = 1;
  while (w < 32 && w < nvec_row) w <<= 1;
  return w;
}

// ---- NASWOT ---------------------------------------------------------------------------------
// Largest thread-block cluster the kernel launches (the portable maximum on Hopper).
constexpr int kNwMaxCluster = 8;

// Batch padded to a multiple of the 16x16 tensor-core tile.
ZC_HD int nw_pad_batch(int64_t b) { return static_cast<int>(ceil_div(b, 16) * 16); }

// Output tiles of the symmetric B x B Gram matrix computed: the upper triangle (i <= j) of the
// NT x NT grid of 16 x 16 tiles, numbered row by row.
ZC_HD int nw_upper_tiles(int nt) { return nt * (nt + 1) / 2; }
ZC_HD void nw_upper_tile(int t, int nt, int* i, int* j) {
  int r = 0;
  while (t >= nt - r) {
    t -= nt - r;
    ++r;
  }
  *i = r;
  *j = r + t;
}

// Feature tiles of a group of L features when each tile holds `ft` features.
ZC_HD int64_t nw_feature_tiles(int64_t L, int ft) { return L <= 0 ? 0 : ceil_div(L, ft); }

// Work items (group, feature tile) per candidate on average: groups x tiles / K, rounded up.
ZC_HD int64_t nw_items_per_cand(int64_t groups, int64_t tiles_per_group, int64_t K) {
  return ceil_div(groups * tiles_per_group, K > 0 ? K : 1);
}

// Automatic cluster size (blocks per candidate): doubled from 1 while the grid would hold fewer
// than two blocks per multiprocessor and a candidate has more work items than ranks, at most
// kNwMaxCluster. Many candidates -> 1 (every block owns candidates); few candidates with long
// groups -> up to 8 blocks share each one.
ZC_HD int nw_auto_cluster(int64_t K, int64_t sms, int64_t items_per_cand) {
  int cs = 1;
  while (cs < kNwMaxCluster && K * cs < 2 * sms && cs < items_per_cand) cs *= 2;
  return cs;
}

// Clusters of a launch: as many as can be resident (`active`), at most one per candidate, at
// most `cap` when cap > 0. Cluster c owns candidates c, c + n, c + 2n, ...; inside a cluster of
// cs blocks, rank r takes the candidate's work items r, r + cs, r + 2 cs, ...
ZC_HD int64_t nw_clusters(int64_t K, int64_t active, int64_t cap) {
  int64_t n = K < active ? K : active;
  if (cap > 0 && cap < n) n = cap;
  return n < 1 ? 1 : n;
}

}  // namespace zc::cuda::part
