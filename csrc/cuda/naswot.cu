// NASWOT Hamming-kernel accumulation (zcfast/ops/naswot.py) on tensor cores.
//
// x: B rows of ROW values, row b at x + b * stride (stride >= ROW: a channel slice of the packed
// tensor is read in place, no copy); group q's features of sample b are the L contiguous values
// x[b, q*L : (q+1)*L]. Candidate k owns groups order[ptr[k] .. ptr[k+1]). With
// S = sign codes (+1 where x > 0, else -1; NaN and 0 give -1, like the reference),
//     out[k] += sum_{groups q of k} S_q S_q^T            (B x B, float32, read-add-write).
//
// Exactness: codes are +-1 in fp16, padding is 0; each tensor-core product is +-1 or 0 and the
// fp32 accumulators hold integers below 2^24, which fp32 represents exactly whatever the order of
// additions. So the result is exact and bitwise reproducible, and the integer-valued partials can
// be combined in any fixed order.
//
// Decomposition (index arithmetic in partition.hpp, replayed on the host by
// tests/cuda_host/partition_test.cpp): a cluster of `cs` blocks (Hopper thread-block cluster,
// 1 <= cs <= 8) owns one candidate at a time (persistent over candidates). The candidate's work items, (group, feature
// tile of FT = 32*V features), go round-robin to the cluster's blocks. A block loads a tile of
// B x FT activations with 16-byte loads (a warp per row, registers prefetching the next tile
// while the tensor cores work on the current one), writes the codes to shared memory as fp16,
// and accumulates the upper-triangle 16x16 tiles of S S^T with WMMA (m16n16k16, fp16 in, fp32
// accumulate). At the end each block stores its Gram matrix (mirrored) in shared memory; block 0
// of the cluster adds the cs partials through distributed shared memory in rank order and does
// the read-add-write of out[k]. No atomics.
#include <cooperative_groups.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include "common.cuh"
#include "launch.hpp"
#include "partition.hpp"

namespace zc::cuda {

namespace {
using namespace detail;
namespace cg = cooperative_groups;
namespace wm = nvcuda::wmma;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kPad = 8;  // fp16 padding per shared-memory row (16 bytes): fewer bank conflicts
constexpr int kMaxCluster = part::kNwMaxCluster;

struct NwParams {
  const void* x;
  const int64_t* order;
  const int64_t* ptr;
  int64_t B, stride, ROW, L, K;
  float* out;
  int BP;  // B padded to a multiple of 16
};

// fp16 codes of V values: +1 (x > 0), -1 (otherwise), 0 (padding)
template <class T, int V>
__device__ __forceinline__ void store_codes(__half* dst, const T (&v)[V], bool valid) {
  __half h[V];
#pragma unroll
  for (int e = 0; e < V; ++e)
    h[e] = valid ? (v[e] > T(0) ? __float2half(1.0f) : __float2half(-1.0f)) : __float2half(0.0f);
  if constexpr (V == 4) {
    uint2 u;
    __half2 lo = __halves2half2(h[0], h[1]), hi = __halves2half2(h[2], h[3]);
    u.x = *reinterpret_cast<unsigned*>(&lo);
    u.y = *reinterpret_cast<unsigned*>(&hi);
    *reinterpret_cast<uint2*>(dst) = u;
  } else if constexpr (V == 2) {
    *reinterpret_cast<__half2*>(dst) = __halves2half2(h[0], h[1]);
  } else {
    dst[0] = h[0];
  }
}

// T: input type; V: elements per load (16 / sizeof(T), or 1 when rows are not 16-byte aligned);
// MAXPER: rows per warp (BP / 8) the kernel is compiled for; MAXF: output tiles per warp.
template <class T, int V, int MAXPER, int MAXF>
__global__ void __launch_bounds__(kThreads, 1) naswot_kernel(NwParams p) {
  constexpr int FT = 32 * V;  // features per tile: one load per lane per row
  constexpr int LD = FT + kPad;
  extern __shared__ __align__(128) unsigned char smem[];
  __half* tile = reinterpret_cast<__half*>(smem);  // [BP][LD] fp16 codes
  float* gram = reinterpret_cast<float*>(smem);    // [BP][BP] after the feature loop

  cg::cluster_group cluster = cg::this_cluster();
  const unsigned rank = cluster.block_rank();
  const unsigned cs = cluster.num_blocks();
  const int64_t cluster_id = blockIdx.x / cs;
  const int64_t nclusters = gridDim.x / cs;

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int BP = p.BP, NT = BP / 16, per = BP / 8;
  const int ntiles_out = part::nw_upper_tiles(NT);
  const int64_t ntile_f = part::nw_feature_tiles(p.L, FT);
  const T* x = static_cast<const T*>(p.x);

  for (int64_t k = cluster_id; k < p.K; k += nclusters) {
    const int64_t g0 = p.ptr[k], g1 = p.ptr[k + 1];
    if (g1 <= g0) continue;  // owns no group: out[k] stays as it is (same branch in every rank)
    const int64_t nitems = (g1 - g0) * ntile_f;

    wm::fragment<wm::accumulator, 16, 16, 16, float> acc[MAXF];
#pragma unroll
    for (int f = 0; f < MAXF; ++f) wm::fill_fragment(acc[f], 0.0f);

    T raw[MAXPER][V];
    bool ok[MAXPER];
    auto load_item = [&](int64_t it) {
      const int64_t q = p.order[g0 + it / ntile_f];
      const int64_t f0 = (it % ntile_f) * FT;
      const int64_t flen = p.L - f0 < FT ? p.L - f0 : FT;
      const bool col_ok = static_cast<int64_t>(lane) * V < flen;  // whole vectors (V | L)
      const T* src = x + q * p.L + f0 + lane * V;
#pragma unroll
      for (int j = 0; j < MAXPER; ++j) {
        const int row = warp + j * kWarps;
        ok[j] = j < per && row < p.B && col_ok;
        if (ok[j]) load_vec<T, V>(src + row * p.stride, raw[j]);
      }
    };

    int64_t it = rank;
    bool have = it < nitems;
    if (have) load_item(it);
    while (have) {
      __syncthreads();  // the previous tile's MMAs are done with shared memory
#pragma unroll
      for (int j = 0; j < MAXPER; ++j) {
        const int row = warp + j * kWarps;
        if (j < per) store_codes<T, V>(tile + row * LD + lane * V, raw[j], ok[j]);
      }
      __syncthreads();
      const int64_t next = it + cs;
      have = next < nitems;
      if (have) load_item(next);  // in flight while the tensor cores run
#pragma unroll
      for (int f = 0; f < MAXF; ++f) {
        const int t = warp + f * kWarps;
        if (t < ntiles_out) {  // warp-uniform
          int ti, tj;
          part::nw_upper_tile(t, NT, &ti, &tj);
#pragma unroll
          for (int kk = 0; kk < FT; kk += 16) {
            wm::fragment<wm::matrix_a, 16, 16, 16, __half, wm::row_major> fa;
            wm::fragment<wm::matrix_b, 16, 16, 16, __half, wm::col_major> fb;
            wm::load_matrix_sync(fa, tile + ti * 16 * LD + kk, LD);
            wm::load_matrix_sync(fb, tile + tj * 16 * LD + kk, LD);
            wm::mma_sync(acc[f], fa, fb, acc[f]);
          }
        }
      }
      it = next;
    }
    __syncthreads();  // the codes are dead; the Gram matrix takes their place
#pragma unroll
    for (int f = 0; f < MAXF; ++f) {
      const int t = warp + f * kWarps;
      if (t < ntiles_out) {
        int ti, tj;
        part::nw_upper_tile(t, NT, &ti, &tj);
        wm::store_matrix_sync(gram + ti * 16 * BP + tj * 16, acc[f], BP, wm::mem_row_major);
        if (ti != tj)  // the mirrored tile (j, i) is the transpose
          wm::store_matrix_sync(gram + tj * 16 * BP + ti * 16, acc[f], BP, wm::mem_col_major);
      }
    }
    cluster.sync();  // every rank's Gram matrix is complete and visible to the cluster
    if (rank == 0) {
      float* dst = p.out + k * p.B * p.B;
      const int64_t nb = p.B;
      for (int64_t e = tid; e < nb * nb; e += kThreads) {
        const int64_t r = e / nb, c = e - r * nb;
        float s = 0.0f;
        for (unsigned q = 0; q < cs; ++q) s += cluster.map_shared_rank(gram, q)[r * BP + c];
        dst[e] += s;
      }
    }
    cluster.sync();  // rank 0 has read every partial before shared memory is reused
  }
}

template <class T, int V, int MAXPER, int MAXF>
int launch(const NwParams& p, int split, int64_t max_clusters, cudaStream_t st, int* used) {
  auto* kern = &naswot_kernel<T, V, MAXPER, MAXF>;
  const void* kp = reinterpret_cast<const void*>(kern);
  constexpr int FT = 32 * V;
  const size_t tile_bytes = static_cast<size_t>(p.BP) * (FT + kPad) * sizeof(__half);
  const size_t gram_bytes = static_cast<size_t>(p.BP) * p.BP * sizeof(float);
  const size_t smem = tile_bytes > gram_bytes ? tile_bytes : gram_bytes;
  int e = ensure_dyn_smem(kp, smem);
  if (e) return e;
  int sms = 0;
  e = sm_count(&sms);
  if (e) return e;
  int cs = split;
  if (cs <= 0) {
    // enough blocks for two per multiprocessor, no more ranks than a candidate has tiles
    const int64_t groups = p.L > 0 ? p.ROW / p.L : 0;
    cs = part::nw_auto_cluster(p.K, sms,
                               part::nw_items_per_cand(groups, part::nw_feature_tiles(p.L, FT), p.K));
  }
  if (cs > kMaxCluster) cs = kMaxCluster;

  // A cluster that cannot be scheduled (occupancy query answers 0, or the launch is refused)
  // falls back to one block per candidate: same result, as the sums are exact integers.
  for (;;) {
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = static_cast<unsigned>(cs);
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.blockDim = dim3(kThreads, 1, 1);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = st;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    cfg.gridDim = dim3(static_cast<unsigned>(cs), 1, 1);
    // persistent: as many clusters as can be resident at once, at most one per candidate
    int active = 0;
    const cudaError_t q = cudaOccupancyMaxActiveClusters(&active, kern, &cfg);
    if (q != cudaSuccess || active < 1) {
      (void)cudaGetLastError();  // a failed query is not sticky: clear it
      if (cs > 1) {
        cs = 1;
        continue;
      }
      active = sms;
    }
    const int64_t nclusters = part::nw_clusters(p.K, active, max_clusters);
    cfg.gridDim = dim3(static_cast<unsigned>(nclusters * cs), 1, 1);
    e = static_cast<int>(cudaLaunchKernelEx(&cfg, kern, p));
    if (e && cs > 1 && e != cudaErrorIllegalAddress && e != cudaErrorLaunchFailure) {
      (void)cudaGetLastError();
      cs = 1;
      continue;
    }
    if (e) return e;
    e = static_cast<int>(cudaGetLastError());
    if (e == 0 && used) *used = cs;
    return e;
  }
}

template <class T, int V>
int by_batch(const NwParams& p, int split, int64_t cap, cudaStream_t st, int* used) {
  // B <= 64: 8 rows per warp and 10 output tiles (<= 2 per warp); B <= 128: 16 rows, 36 tiles
  if (p.BP <= 64) return launch<T, V, 8, 2>(p, split, cap, st, used);
  return launch<T, V, 16, 5>(p, split, cap, st, used);
}

}  // namespace

int naswot_kernel(const void* x, const int64_t* order, const int64_t* ptr, int64_t B,
                  int64_t stride, int64_t ROW, int64_t L, int64_t K, float* out, bool is_f64,
                  int split, uintptr_t stream, int64_t max_clusters, int* used_cluster) {
  if (used_cluster) *used_cluster = 0;  // 0: nothing launched
  if (K <= 0 || B <= 0 || L <= 0 || ROW <= 0) return 0;  // no feature: out[k] += 0
  if (B > kNaswotMaxBatch || !x || !order || !ptr || !out || ROW < L || ROW % L != 0 ||
      stride < ROW || split < 0 || split > kMaxCluster || max_clusters < 0)
    return cudaErrorInvalidValue;
  const cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  NwParams p{x, order, ptr, B, stride, ROW, L, K, out, part::nw_pad_batch(B)};
  const int64_t es = is_f64 ? 8 : 4, V = 16 / es;
  // 16-byte loads: the base, every row start (stride) and every group start (L) on 16 bytes
  const bool vec_ok = reinterpret_cast<uintptr_t>(x) % 16 == 0 && stride % V == 0 && L % V == 0;
  int* u = used_cluster;
  if (is_f64)
    return vec_ok ? by_batch<double, 2>(p, split, max_clusters, st, u)
                  : by_batch<double, 1>(p, split, max_clusters, st, u);
  return vec_ok ? by_batch<float, 4>(p, split, max_clusters, st, u)
                : by_batch<float, 1>(p, split, max_clusters, st, u);
}

}  // namespace zc::cuda
