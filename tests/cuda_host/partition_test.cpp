// Host-side checks of the CUDA kernels' work decomposition (csrc/cuda/partition.hpp), compiled
// with a plain C++ compiler by tests/test_cuda_build.py: no GPU needed. Each check replays the
// index arithmetic the kernels use and asserts that every element / tile is covered exactly
// once. Exit code 0 = all passed; a failure prints what broke.
//
// Two modes:
//   partition_test            built-in checks (random ragged sizes, every batch 1..128)
//   partition_test --cases    one case per stdin line, the same cases as the GPU kernel tests
//                             (tests/test_cuda_kernels.py writes them): the grid, persistent loop
//                             and cluster assignment each GPU launch would use, replayed on the
//                             host. One result line per case: "ok <key>=<value> ..." or "FAIL ...".
#include <cstdint>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
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

// ---- --cases mode: the GPU tests' launches, replayed ------------------------------------------
// Every replay walks the persistent loops exactly as the kernels do (block b takes items
// b, b + grid, ...; cluster c takes candidates c, c + n, ...; rank r takes items r, r + cs, ...),
// counts how often each element / (candidate, item) is visited, and reports the largest number
// of iterations a block (or cluster) made: >= 2 means the loop's second iteration is reached.
static constexpr int kReplayThreads = 256;  // every fused-reduction kernel uses 256 threads

// "sal <resident> <cap> <grid_mode> <force_split> <nseg> <off_0> ... <off_nseg>"
static std::string replay_saliency(std::istringstream& in) {
  int64_t resident, cap, nseg;
  int grid_mode, force_split;
  in >> resident >> cap >> grid_mode >> force_split >> nseg;
  std::vector<int64_t> off(nseg + 1);
  for (auto& o : off) in >> o;
  if (!in) return "FAIL parse";
  for (int64_t s = 0; s < nseg; ++s)
    if (off[s] < 0 || off[s + 1] < off[s]) return "FAIL offsets decrease at segment " + std::to_string(s);
  const int64_t n = nseg > 0 ? off[nseg] : 0;
  int64_t max_len = 0;
  for (int64_t s = 0; s < nseg; ++s) max_len = std::max<int64_t>(max_len, off[s + 1] - off[s]);
  if (nseg == 0 || n == 0 || max_len == 0) return "ok launched=0";  // the adapter's empty guard
  const bool split = force_split || max_len > kSalDirectMax;
  std::vector<int64_t> cum(nseg + 1, 0);
  for (int64_t s = 0; s < nseg; ++s) cum[s + 1] = cum[s] + sal_chunks(off[s + 1] - off[s]);
  const int64_t items = split ? cum[nseg] : nseg;
  const int64_t work = split ? sal_max_items(nseg, n) : nseg;
  if (items > work) return "FAIL items exceed the launch's work bound";
  const int64_t grid = grid_mode == 1 ? persistent_blocks(0x7fffffff, work, cap)
                                      : persistent_blocks(resident, work, cap);
  std::vector<int> seen(static_cast<size_t>(n), 0);
  int64_t max_iters = 0;
  for (int64_t b = 0; b < grid; ++b) {
    int64_t iters = 0;
    for (int64_t i = b; i < items; i += grid) {
      ++iters;
      int64_t a0, a1;
      if (split) {
        int64_t s = 0;
        while (cum[s + 1] <= i) ++s;  // item_seg of the plan kernel
        sal_chunk_range(off[s], off[s + 1], i - cum[s], &a0, &a1);
      } else {
        a0 = off[i];
        a1 = off[i + 1];
      }
      // the block's threads split the range into head / vectors / tail (phase 1 of 4: the
      // misaligned case, the most intricate split)
      const auto part = replay_reduce_range(a1 - a0, (a0 + 1) % 4, 4, kReplayThreads, 4);
      for (int64_t e = 0; e < a1 - a0; ++e) seen[a0 + e] += part[e];
    }
    max_iters = std::max(max_iters, iters);
  }
  for (int64_t e = 0; e < n; ++e)
    if (seen[e] != (e >= off[0] && e < off[nseg] ? 1 : 0))
      return "FAIL element " + std::to_string(e) + " seen " + std::to_string(seen[e]) + " times";
  return "ok launched=1 mode=" + std::string(split ? "split" : "direct") + " items=" +
         std::to_string(items) + " grid=" + std::to_string(grid) +
         " max_iters=" + std::to_string(max_iters);
}

// "fisher <resident> <cap> <B> <C> <HW> <V>"  (V: 16-byte vector width the launch would use)
static std::string replay_fisher(std::istringstream& in) {
  int64_t resident, cap, B, C, HW, V;
  in >> resident >> cap >> B >> C >> HW >> V;
  if (!in) return "FAIL parse";
  if (B == 0 || C == 0 || HW == 0) return "ok launched=0";
  std::vector<int> seen(static_cast<size_t>(B * C), 0);  // (sample, channel) rows
  int64_t max_iters = 0, grid = 0;
  std::string kind;
  if (HW < kFisherSmallHW) {  // 32 channels x 8 sample groups per block and iteration
    kind = "small";
    const int64_t items = ceil_div(C, 32);
    grid = persistent_blocks(resident, items, cap);
    for (int64_t blk = 0; blk < grid; ++blk) {
      int64_t iters = 0;
      for (int64_t c0 = blk * 32; c0 < C; c0 += grid * 32) {
        ++iters;
        for (int t = 0; t < kReplayThreads; ++t) {
          const int64_t c = c0 + (t & 31);
          if (c >= C) continue;
          for (int64_t b = t >> 5; b < B; b += kReplayThreads / 32) seen[b * C + c]++;
        }
      }
      max_iters = std::max(max_iters, iters);
    }
  } else {  // one block per channel; sub-warps of W lanes take samples slot, slot + nslots, ...
    kind = "rows";
    const int W = fisher_width(HW / V);
    const int nslots = kReplayThreads / W;
    grid = persistent_blocks(resident, C, cap);
    for (int64_t blk = 0; blk < grid; ++blk) {
      int64_t iters = 0;
      for (int64_t c = blk; c < C; c += grid) {
        ++iters;
        for (int64_t b0 = 0; b0 < B; b0 += nslots)
          for (int slot = 0; slot < nslots; ++slot)
            if (b0 + slot < B) seen[(b0 + slot) * C + c]++;
      }
      max_iters = std::max(max_iters, iters);
    }
  }
  for (int64_t r = 0; r < B * C; ++r)
    if (seen[r] != 1) return "FAIL row " + std::to_string(r) + " seen " + std::to_string(seen[r]);
  return "ok launched=1 kernel=" + kind + " grid=" + std::to_string(grid) +
         " max_iters=" + std::to_string(max_iters);
}

// "naswot <sms> <active_clusters> <cap> <split> <B> <L> <FT> <K> <G> <cand_0> ... <cand_G-1>"
// (cand_q: the candidate of group q; FT: features per tile, 32 x the vector width)
static std::string replay_naswot(std::istringstream& in) {
  int64_t sms, active, cap, B, L, FT, K, G;
  int split;
  in >> sms >> active >> cap >> split >> B >> L >> FT >> K >> G;
  std::vector<int64_t> cand(G);
  for (auto& c : cand) in >> c;
  if (!in) return "FAIL parse";
  if (K <= 0 || B <= 0 || L <= 0 || G <= 0) return "ok launched=0 cluster=0";
  // candidate-major CSR (argsort by candidate, stable) as zcfast/ops/naswot.py builds it
  std::vector<int64_t> ptr(K + 1, 0), order;
  for (auto c : cand) ptr[c + 1]++;
  for (int64_t k = 0; k < K; ++k) ptr[k + 1] += ptr[k];
  for (int64_t k = 0; k < K; ++k)
    for (int64_t q = 0; q < G; ++q)
      if (cand[q] == k) order.push_back(q);
  const int64_t ntile_f = nw_feature_tiles(L, static_cast<int>(FT));
  const int cs = split > 0 ? split
                           : nw_auto_cluster(K, sms, nw_items_per_cand(G, ntile_f, K));
  if (cs < 1 || cs > kNwMaxCluster) return "FAIL cluster size " + std::to_string(cs);
  const int64_t nclusters = nw_clusters(K, active, cap);
  // visits of (group, feature) by the block rows warp + 8 j (j < BP / 8) of every rank
  const int bp = nw_pad_batch(B);
  std::vector<int> seen(static_cast<size_t>(G * L), 0);
  std::vector<int> owner_ok(static_cast<size_t>(K), 0);
  int64_t max_cands = 0;
  for (int64_t c = 0; c < nclusters; ++c) {
    int64_t cands = 0;
    for (int64_t k = c; k < K; k += nclusters) {
      ++cands;
      owner_ok[k]++;
      const int64_t nitems = (ptr[k + 1] - ptr[k]) * ntile_f;
      for (int r = 0; r < cs; ++r)
        for (int64_t it = r; it < nitems; it += cs) {
          const int64_t q = order[ptr[k] + it / ntile_f];
          const int64_t f0 = (it % ntile_f) * FT;
          const int64_t flen = std::min<int64_t>(L - f0, FT);
          if (cand[q] != k) return "FAIL item of another candidate";
          for (int64_t f = 0; f < flen; ++f) seen[q * L + f0 + f]++;
        }
    }
    max_cands = std::max(max_cands, cands);
  }
  for (int64_t k = 0; k < K; ++k)
    if (owner_ok[k] != 1) return "FAIL candidate " + std::to_string(k) + " owned " + std::to_string(owner_ok[k]);
  for (int64_t e = 0; e < G * L; ++e)
    if (seen[e] != 1) return "FAIL feature " + std::to_string(e) + " seen " + std::to_string(seen[e]);
  if (bp / 8 > (bp <= 64 ? 8 : 16)) return "FAIL rows per warp";
  return "ok launched=1 cluster=" + std::to_string(cs) + " clusters=" + std::to_string(nclusters) +
         " max_cands=" + std::to_string(max_cands);
}

// "init <sms> <cap> <n_out> <nseg> <off_0> ... <off_nseg>"
static std::string replay_init(std::istringstream& in) {
  int64_t sms, cap, n_out, nseg;
  in >> sms >> cap >> n_out >> nseg;
  std::vector<int64_t> off(nseg + 1);
  for (auto& o : off) in >> o;
  if (!in) return "FAIL parse";
  if (nseg == 0 || n_out == 0) return "ok launched=0";
  for (int64_t s = 0; s < nseg; ++s)
    if (off[s] < 0 || off[s + 1] < off[s] || off[s + 1] > n_out)
      return "FAIL segment " + std::to_string(s) + " outside the buffer";
  const int64_t grid = init_blocks(sms, nseg, cap);
  const int64_t chunk = kReplayThreads * 4;
  std::vector<int> seen(static_cast<size_t>(n_out), 0);
  int64_t max_iters = 0;
  for (int64_t b = 0; b < grid; ++b) {
    int64_t iters = 0;
    for (int64_t s = b; s < nseg; s += grid) {
      ++iters;
      const int64_t len = off[s + 1] - off[s];
      for (int64_t base = 0; base < len; base += chunk)
        for (int t = 0; t < kReplayThreads; ++t)
          for (int j = 0; j < 4; ++j) {
            const int64_t i = base + t + j * kReplayThreads;
            const int64_t pos = off[s] + i;
            if (i < len && pos >= 0 && pos < n_out) seen[pos]++;
          }
    }
    max_iters = std::max(max_iters, iters);
  }
  for (int64_t s = 0; s < nseg; ++s)
    for (int64_t e = off[s]; e < off[s + 1]; ++e)
      if (seen[e] != 1) return "FAIL element " + std::to_string(e);
  return "ok launched=1 grid=" + std::to_string(grid) + " max_iters=" + std::to_string(max_iters);
}

static int run_cases() {
  std::string line;
  int bad = 0;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    std::istringstream in(line);
    std::string kind;
    in >> kind;
    std::string r = kind == "sal"      ? replay_saliency(in)
                    : kind == "fisher" ? replay_fisher(in)
                    : kind == "naswot" ? replay_naswot(in)
                    : kind == "init"   ? replay_init(in)
                                       : "FAIL unknown case " + kind;
    bad += r.rfind("ok", 0) != 0;
    std::cout << r << "\n";
  }
  return bad ? 1 : 0;
}

// persistent grid / cluster arithmetic on its own: bounds and exact coverage
static void test_persistent() {
  for (int64_t resident : {1, 7, 1056})
    for (int64_t work : {0, 1, 5, 1056, 1057, 5000})
      for (int64_t cap : {0, 1, 3, 2000}) {
        const int64_t g = persistent_blocks(resident, work, cap);
        CHECK(g >= 1, "grid >= 1");
        CHECK(g <= resident && (work == 0 || g <= work) && (cap == 0 || g <= cap), "grid bounds");
        CHECK(g == std::max<int64_t>(1, std::min({resident, work, cap > 0 ? cap : resident})),
              "grid value");
      }
  for (int64_t K : {1, 2, 5, 64, 300, 1000})
    for (int64_t sms : {1, 132})
      for (int64_t items : {1, 2, 3, 9, 100}) {
        const int cs = nw_auto_cluster(K, sms, items);
        CHECK(cs >= 1 && cs <= kNwMaxCluster && (cs & (cs - 1)) == 0, "auto cluster power of two");
        CHECK(cs == 1 || (K * (cs / 2) < 2 * sms && cs / 2 < items), "cluster doubled only when allowed");
        CHECK(cs == kNwMaxCluster || K * cs >= 2 * sms || cs >= items, "cluster not doubled enough");
      }
  CHECK(nw_clusters(300, 16, 0) == 16 && nw_clusters(300, 16, 3) == 3 && nw_clusters(5, 16, 0) == 5,
        "cluster count");
}

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--cases") == 0) return run_cases();
  std::mt19937_64 rng(12345);
  test_vec_split();
  test_saliency_split(rng);
  test_fisher();
  test_naswot();
  test_persistent();
  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("partition checks passed\n");
  return 0;
}
