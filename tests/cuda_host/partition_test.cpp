// Host-side checks of the CUDA kernels' work decomposition (csrc/cuda/partition.hpp), compiled
// with a plain C++ compiler by tests/test_cuda_build.py: no GPU needed. Each check replays the
// index arithmetic the kernels use and asserts that every element / tile is covered exactly
// once. Exit code 0 = all passed; a failure prints what broke.
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "cuda/partition.hpp"

using namespace zc::cuda::part;

static int failures = 0;
#define CHECK(cond, ...)                                          \
  do {                                                            \
    if (!(cond)) {                                                \
      if (failures < 20) {                                        \
        std::fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
        std::fprintf(stderr, __VA_ARGS__);                        \
        std::fprintf(stderr, "\n");                               \
      }                                                           \
      ++failures;                                                 \
    }                                                             \
  } while (0)

// The thread -> element map of saliency.cu's reduce_range for one block of `threads` threads:
// head element tid, vectors tid, tid + threads, ... (unrolled by `unroll`, then the remainder),
// tail element tid. Returns per-element visit counts of [0, len).
static std::vector<int> replay_reduce_range(int64_t len, int64_t phase, int vec, int threads,
                                            int unroll) {
  std::vector<int> seen(static_cast<size_t>(len), 0);
  const VecSplit sp = vec_split(len, phase, vec);
  for (int tid = 0; tid < threads; ++tid) {
    if (tid < sp.head) seen[tid]++;
    int64_t v = tid;
    for (; v + (unroll - 1) * threads < sp.nvec; v += unroll * threads)
      for (int u = 0; u < unroll; ++u)
        for (int k = 0; k < vec; ++k) seen[sp.head + (v + u * threads) * vec + k]++;
    for (; v < sp.nvec; v += threads)
      for (int k = 0; k < vec; ++k) seen[sp.head + v * vec + k]++;
    if (tid < sp.tail) seen[sp.head + sp.nvec * vec + tid]++;
  }
  return seen;
}

static void test_vec_split() {
  for (int vec : {1, 2, 4})
    for (int64_t phase = 0; phase < vec; ++phase)
      for (int64_t len = 0; len < 300; ++len) {
        const VecSplit sp = vec_split(len, phase, vec);
        CHECK(sp.head + sp.nvec * vec + sp.tail == len, "len %lld", (long long)len);
        CHECK(sp.head >= 0 && sp.head < vec && sp.tail >= 0 && sp.tail < vec, "head/tail");
        if (sp.nvec > 0) CHECK((phase + sp.head) % vec == 0, "body not aligned");
        const auto seen = replay_reduce_range(len, phase, vec, 256, 4);
        for (int64_t i = 0; i < len; ++i)
          CHECK(seen[i] == 1, "vec %d phase %lld len %lld: element %lld seen %d times", vec,
                (long long)phase, (long long)len, (long long)i, seen[i]);
      }
  // long ranges exercise the unrolled body and its remainder
  for (int64_t len : {1024LL * 4 * 4 - 1, 1024LL * 4 * 4 + 13, 65536LL + 7, 16384LL})
    for (int vec : {1, 2, 4}) {
      const auto seen = replay_reduce_range(len, 1 % vec, vec, 256, 4);
      int bad = 0;
      for (int64_t i = 0; i < len; ++i) bad += seen[i] != 1;
      CHECK(bad == 0, "long range len %lld vec %d: %d elements wrong", (long long)len, vec, bad);
    }
}

// saliency split mode: the plan (chunk prefix sums + item -> segment) and chunk ranges cover
// every element of every segment exactly once, within the workspace bound.
static void test_saliency_split(std::mt19937_64& rng) {
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t nseg = 1 + static_cast<int64_t>(rng() % 60);
    std::vector<int64_t> off(nseg + 1, 0);
    off[0] = static_cast<int64_t>(rng() % 5);
    for (int64_t s = 0; s < nseg; ++s) {
      const int kind = static_cast<int>(rng() % 4);
      const int64_t len = kind == 0 ? 0
                          : kind == 1 ? static_cast<int64_t>(rng() % 100)
                          : kind == 2 ? static_cast<int64_t>(rng() % (3 * kSalChunk))
                                      : kSalChunk * static_cast<int64_t>(1 + rng() % 3);
      off[s + 1] = off[s] + len;
    }
    const int64_t n = off[nseg] + static_cast<int64_t>(rng() % 3);
    // plan, as saliency_plan_kernel computes it
    std::vector<int64_t> cum(nseg + 1, 0);
    for (int64_t s = 0; s < nseg; ++s) cum[s + 1] = cum[s] + sal_chunks(off[s + 1] - off[s]);
    const int64_t items = cum[nseg];
    CHECK(items <= sal_max_items(nseg, n), "items %lld > bound", (long long)items);
    std::vector<int32_t> item_seg(items);
    for (int64_t s = 0; s < nseg; ++s)
      for (int64_t j = 0; j < cum[s + 1] - cum[s]; ++j) item_seg[cum[s] + j] = static_cast<int32_t>(s);
    std::vector<int> seen(static_cast<size_t>(n), 0);
    for (int64_t i = 0; i < items; ++i) {
      const int64_t s = item_seg[i];
      int64_t a, b;
      sal_chunk_range(off[s], off[s + 1], i - cum[s], &a, &b);
      CHECK(a >= off[s] && b <= off[s + 1] && a < b, "chunk outside its segment");
      CHECK(b - a <= kSalChunk, "chunk too long");
      for (int64_t e = a; e < b; ++e) seen[e]++;
    }
    for (int64_t e = 0; e < n; ++e)
      CHECK(seen[e] == (e >= off[0] && e < off[nseg] ? 1 : 0), "element %lld", (long long)e);
    const SalWorkspace ws = sal_workspace(nseg, n);
    CHECK(ws.item_off % 256 == 0 && ws.partial_off % 256 == 0, "workspace alignment");
    CHECK(ws.item_off >= (nseg + 1) * 8, "cum overlaps item_seg");
    CHECK(ws.partial_off - ws.item_off >= sal_max_items(nseg, n) * 4, "item_seg overlaps partial");
    CHECK(ws.bytes - ws.partial_off >= sal_max_items(nseg, n) * 40, "partial too small");
  }
}

// fisher rows kernel: sub-warps of `w` lanes; the row's vectors v = sub, sub + w, ... (unrolled
// by 4, then the remainder) are each read by exactly one lane.
static void test_fisher() {
  CHECK(fisher_width(1) == 1 && fisher_width(4) == 4 && fisher_width(5) == 8, "width");
  CHECK(fisher_width(16) == 16 && fisher_width(256) == 32 && fisher_width(33) == 32, "width");
  for (int64_t nvec = 1; nvec < 700; nvec += (nvec < 80 ? 1 : 37)) {
    const int w = fisher_width(nvec);
    CHECK(w >= 1 && w <= 32 && (w & (w - 1)) == 0 && 32 % w == 0, "width power of two");
    std::vector<int> seen(static_cast<size_t>(nvec), 0);
    for (int sub = 0; sub < w; ++sub) {
      int64_t v = sub;
      for (; v + 3 * w < nvec; v += 4 * w)
        for (int u = 0; u < 4; ++u) seen[v + u * w]++;
      for (; v < nvec; v += w) seen[v]++;
    }
    for (int64_t v = 0; v < nvec; ++v) CHECK(seen[v] == 1, "fisher nvec %lld", (long long)nvec);
  }
}

// NASWOT: padded batch, the upper-triangle tile enumeration (and its mirror) covers the NT x NT
// grid once, every warp holds at most MAXF tiles, and rows warp + 8 j (j < BP / 8) cover
// [0, BP) once.
static void test_naswot() {
  for (int64_t b = 1; b <= 128; ++b) {
    const int bp = nw_pad_batch(b);
    CHECK(bp % 16 == 0 && bp >= b && bp - b < 16, "pad %lld", (long long)b);
    const int nt = bp / 16;
    std::vector<int> cover(nt * nt, 0);
    const int nup = nw_upper_tiles(nt);
    for (int t = 0; t < nup; ++t) {
      int i, j;
      nw_upper_tile(t, nt, &i, &j);
      CHECK(0 <= i && i <= j && j < nt, "tile %d -> (%d, %d)", t, i, j);
      cover[i * nt + j]++;
      if (i != j) cover[j * nt + i]++;
    }
    for (int q = 0; q < nt * nt; ++q) CHECK(cover[q] == 1, "B %lld tile %d", (long long)b, q);
    const int maxf = bp <= 64 ? 2 : 5;  // naswot.cu's instantiations
    CHECK((nup + 7) / 8 <= maxf, "B %lld needs %d tiles per warp", (long long)b, (nup + 7) / 8);
    const int per = bp / 8, maxper = bp <= 64 ? 8 : 16;
    CHECK(per <= maxper, "rows per warp");
    std::vector<int> rows(bp, 0);
    for (int warp = 0; warp < 8; ++warp)
      for (int j = 0; j < per; ++j) rows[warp + j * 8]++;
    for (int r = 0; r < bp; ++r) CHECK(rows[r] == 1, "row %d", r);
  }
  for (int ft : {32, 64, 128})
    for (int64_t L = 0; L < 1000; L += 7) {
      const int64_t nt = nw_feature_tiles(L, ft);
      CHECK(nt * ft >= L && (nt == 0 || (nt - 1) * ft < L), "feature tiles L %lld", (long long)L);
    }
}

int main() {
  std::mt19937_64 rng(12345);
  test_vec_split();
  test_saliency_split(rng);
  test_fisher();
  test_naswot();
  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("partition checks passed\n");
  return 0;
}
