// Segmented saliency reduction (zcfast/ops/saliency.py): for every segment s of the flat
// buffers, out[s] = (sum |w g|, sum w g, sum g^2, sum w hg, sum w^2) in float64.
//
// Work items are whole segments ("direct" mode, every segment <= kSalDirectMax elements) or
// chunks of kSalChunk elements ("split" mode, when a longer segment exists). A persistent grid of
// 256-thread blocks walks the items; each thread streams its share with 16-byte loads (float4 /
// double2; a scalar head and tail cover ranges that do not start or end on a 16-byte boundary),
// keeps five float64 accumulators, and the block combines them with warp shuffles and one small
// shared-memory step in a fixed order. Split mode adds a one-block plan kernel (chunk prefix sums
// and the item -> segment table) and a combine kernel that adds each segment's chunk partials in
// chunk order. No atomics anywhere: the result depends only on the inputs and their 16-byte
// alignment phase, never on scheduling.
//
// Precision: float32 inputs are widened to float64 before the products. A product of two
// float32 values is exact in float64 (24 + 24 significant bits <= 53), so every term equals the
// torch reference's term, and the sums keep float64 accuracy even where sum w g cancels (plain,
// grasp). The cost (3 conversions and 6 float64 operations per element) stays far below Hopper's
// float64 rate at memory speed, so the kernel remains bandwidth-bound.
#include <cuda_runtime.h>

#include "common.cuh"
#include "launch.hpp"
#include "partition.hpp"

namespace zc::cuda {

namespace {
using namespace detail;
using part::kSalChunk;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kUnroll = 4;  // vectors per input in flight per thread
constexpr int kPlanThreads = 1024;
constexpr int kPlanPer = 8;  // consecutive segments per plan thread

struct SalParams {
  const void* w;
  const void* g;
  const void* hg;
  const int64_t* off;
  int64_t nseg;
  double* out;
  // split mode only
  const int64_t* cum;       // (nseg + 1) chunk prefix sums; cum[nseg] = number of items
  const int32_t* item_seg;  // item -> segment
  double* partial;          // (items, 5)
};

template <class T, bool HAS_HG>
__device__ __forceinline__ void accumulate(T w, T g, T h, double (&acc)[5]) {
  const double wd = static_cast<double>(w), gd = static_cast<double>(g);
  const double wg = wd * gd;
  acc[0] += fabs(wg);
  acc[1] += wg;
  acc[2] = fma(gd, gd, acc[2]);
  if (HAS_HG) acc[3] = fma(wd, static_cast<double>(h), acc[3]);
  acc[4] = fma(wd, wd, acc[4]);
}

// This thread's share of [a, b): head, vector body (kUnroll vectors per input in flight), tail.
template <class T, int V, bool HAS_HG>
__device__ __forceinline__ void reduce_range(const T* __restrict__ w, const T* __restrict__ g,
                                             const T* __restrict__ hg, int64_t a, int64_t b,
                                             double (&acc)[5]) {
  const int tid = threadIdx.x;
  const int64_t len = b - a;
  if (len <= 0) return;
  // misalignment of element a in elements; the launcher guarantees w, g, hg share it
  const int64_t phase =
      V == 1 ? 0 : static_cast<int64_t>((reinterpret_cast<uintptr_t>(w + a) / sizeof(T)) % V);
  const part::VecSplit sp = part::vec_split(len, phase, V);
  if (tid < sp.head) {
    const int64_t i = a + tid;
    accumulate<T, HAS_HG>(w[i], g[i], HAS_HG ? hg[i] : T(0), acc);
  }
  const int64_t base = a + sp.head;
  const T* wb = w + base;
  const T* gb = g + base;
  const T* hb = HAS_HG ? hg + base : nullptr;
  int64_t v = tid;
  for (; v + (kUnroll - 1) * kThreads < sp.nvec; v += kUnroll * kThreads) {
    T wv[kUnroll][V], gv[kUnroll][V], hv[kUnroll][V];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t e = (v + u * kThreads) * V;
      load_vec<T, V>(wb + e, wv[u]);
      load_vec<T, V>(gb + e, gv[u]);
      if (HAS_HG) load_vec<T, V>(hb + e, hv[u]);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int k = 0; k < V; ++k) accumulate<T, HAS_HG>(wv[u][k], gv[u][k], HAS_HG ? hv[u][k] : T(0), acc);
  }
  for (; v < sp.nvec; v += kThreads) {
    T wv[V], gv[V], hv[V];
    load_vec<T, V>(wb + v * V, wv);
    load_vec<T, V>(gb + v * V, gv);
    if (HAS_HG) load_vec<T, V>(hb + v * V, hv);
#pragma unroll
    for (int k = 0; k < V; ++k) accumulate<T, HAS_HG>(wv[k], gv[k], HAS_HG ? hv[k] : T(0), acc);
  }
  if (tid < sp.tail) {
    const int64_t i = base + sp.nvec * V + tid;
    accumulate<T, HAS_HG>(w[i], g[i], HAS_HG ? hg[i] : T(0), acc);
  }
}

// Block sum of acc[0..5) in a fixed order, written to dst[0..5) by threads 0..4.
__device__ __forceinline__ void block_store(double (&acc)[5], double* __restrict__ dst,
                                            double (*red)[5]) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int q = 0; q < 5; ++q) acc[q] = warp_sum(acc[q]);
  if (lane == 0) {
#pragma unroll
    for (int q = 0; q < 5; ++q) red[warp][q] = acc[q];
  }
  __syncthreads();
  if (threadIdx.x < 5) {
    double s = 0.0;
#pragma unroll
    for (int k = 0; k < kWarps; ++k) s += red[k][threadIdx.x];
    dst[threadIdx.x] = s;
  }
  __syncthreads();  // `red` is reused by the next item
}

template <class T, int V, bool HAS_HG, bool SPLIT>
__global__ void __launch_bounds__(kThreads) saliency_kernel(SalParams p) {
  __shared__ double red[kWarps][5];
  const T* w = static_cast<const T*>(p.w);
  const T* g = static_cast<const T*>(p.g);
  const T* hg = static_cast<const T*>(p.hg);
  const int64_t nitems = SPLIT ? p.cum[p.nseg] : p.nseg;
  for (int64_t i = blockIdx.x; i < nitems; i += gridDim.x) {
    int64_t a, b;
    double* dst;
    if (SPLIT) {
      const int64_t s = p.item_seg[i];
      const int64_t c0 = p.cum[s];
      part::sal_chunk_range(p.off[s], p.off[s + 1], i - c0, &a, &b);
      // a segment of one chunk is final as it stands; longer ones go through the combine pass
      dst = (p.cum[s + 1] - c0 == 1) ? p.out + 5 * s : p.partial + 5 * i;
    } else {
      a = p.off[i];
      b = p.off[i + 1];
      dst = p.out + 5 * i;
    }
    double acc[5] = {0.0, 0.0, 0.0, 0.0, 0.0};
    reduce_range<T, V, HAS_HG>(w, g, hg, a, b, acc);
    block_store(acc, dst, red);
  }
}

// One block: cum[s] = sum_{t < s} chunks(t), cum[nseg] = total, item_seg[cum[s] + j] = s.
__global__ void __launch_bounds__(kPlanThreads)
    saliency_plan_kernel(const int64_t* __restrict__ off, int64_t nseg, int64_t* __restrict__ cum,
                         int32_t* __restrict__ item_seg) {
  __shared__ int64_t warp_tot[kPlanThreads / 32];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  int64_t carry = 0;  // items before this tile (the same in every thread)
  for (int64_t t0 = 0; t0 < nseg; t0 += static_cast<int64_t>(kPlanThreads) * kPlanPer) {
    const int64_t s0 = t0 + static_cast<int64_t>(tid) * kPlanPer;
    int64_t n[kPlanPer];
    int64_t local = 0;
#pragma unroll
    for (int k = 0; k < kPlanPer; ++k) {
      const int64_t s = s0 + k;
      n[k] = s < nseg ? part::sal_chunks(off[s + 1] - off[s]) : 0;
      local += n[k];
    }
    int64_t x = local;  // inclusive scan over the warp
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int64_t y = __shfl_up_sync(kFullMask, x, o);
      if (lane >= o) x += y;
    }
    if (lane == 31) warp_tot[warp] = x;
    __syncthreads();
    if (warp == 0) {
      int64_t t = warp_tot[lane];
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int64_t y = __shfl_up_sync(kFullMask, t, o);
        if (lane >= o) t += y;
      }
      warp_tot[lane] = t;
    }
    __syncthreads();
    int64_t excl = carry + (warp > 0 ? warp_tot[warp - 1] : 0) + x - local;
#pragma unroll
    for (int k = 0; k < kPlanPer; ++k) {
      const int64_t s = s0 + k;
      if (s < nseg) {
        cum[s] = excl;
        for (int64_t j = 0; j < n[k]; ++j) item_seg[excl + j] = static_cast<int32_t>(s);
        excl += n[k];
      }
    }
    carry += warp_tot[kPlanThreads / 32 - 1];
    __syncthreads();  // warp_tot is rewritten by the next tile
  }
  if (tid == 0) cum[nseg] = carry;
}

// One warp per segment: the chunk partials of a multi-chunk segment, lane l taking chunks
// l, l + 32, ... in order, then a fixed butterfly; empty segments get zeros; single-chunk
// segments were written by the main kernel.
__global__ void __launch_bounds__(256)
    saliency_combine_kernel(const int64_t* __restrict__ cum, int64_t nseg,
                            const double* __restrict__ partial, double* __restrict__ out) {
  const int64_t s = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (s >= nseg) return;  // warp-uniform
  const int64_t c0 = cum[s], nch = cum[s + 1] - c0;
  if (nch == 1) return;
  double acc[5] = {0.0, 0.0, 0.0, 0.0, 0.0};
  for (int64_t j = lane; j < nch; j += 32) {
    const double* r = partial + 5 * (c0 + j);
#pragma unroll
    for (int q = 0; q < 5; ++q) acc[q] += r[q];
  }
#pragma unroll
  for (int q = 0; q < 5; ++q) acc[q] = warp_sum(acc[q]);
  if (lane == 0) {
#pragma unroll
    for (int q = 0; q < 5; ++q) out[5 * s + q] = acc[q];
  }
}

template <class T, int V, bool HAS_HG, bool SPLIT>
int launch_main(const SalParams& p, int64_t work, int grid_mode, int64_t max_grid, cudaStream_t st) {
  const void* k = reinterpret_cast<const void*>(&saliency_kernel<T, V, HAS_HG, SPLIT>);
  unsigned grid = 0;
  if (grid_mode == 1) {  // one block per work item: the hardware scheduler balances the load
    grid = static_cast<unsigned>(part::persistent_blocks(0x7fffffff, work, max_grid));
  } else {
    int e = persistent_grid(k, kThreads, 0, work, &grid, max_grid);
    if (e) return e;
  }
  saliency_kernel<T, V, HAS_HG, SPLIT><<<grid, kThreads, 0, st>>>(p);
  return static_cast<int>(cudaGetLastError());
}

template <class T, bool SPLIT>
int dispatch(const SalParams& p, bool vec_ok, int64_t work, int gm, int64_t cap, cudaStream_t st) {
  constexpr int V = 16 / sizeof(T);
  const bool has_hg = p.hg != nullptr;
  if (vec_ok)
    return has_hg ? launch_main<T, V, true, SPLIT>(p, work, gm, cap, st)
                  : launch_main<T, V, false, SPLIT>(p, work, gm, cap, st);
  return has_hg ? launch_main<T, 1, true, SPLIT>(p, work, gm, cap, st)
                : launch_main<T, 1, false, SPLIT>(p, work, gm, cap, st);
}

}  // namespace

int64_t segment_saliency_workspace_bytes(int64_t nseg, int64_t n) {
  return part::sal_workspace(nseg < 0 ? 0 : nseg, n < 0 ? 0 : n).bytes;
}

int64_t segment_saliency_direct_max() { return part::kSalDirectMax; }

int segment_saliency(const void* w, const void* g, const void* hg, const int64_t* offsets,
                     int64_t nseg, int64_t n, double* out, bool is_f64, int64_t max_len,
                     void* workspace, int64_t workspace_bytes, uintptr_t stream,
                     int grid_mode, int64_t max_grid) {
  if (nseg <= 0) return 0;
  if (!out || n < 0) return cudaErrorInvalidValue;
  const cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  // no element at all: every segment is empty (offsets lie within [0, n]), so every row is zero
  if (n == 0) return static_cast<int>(cudaMemsetAsync(out, 0, nseg * 5 * sizeof(double), st));
  if (!w || !g || !offsets) return cudaErrorInvalidValue;
  const size_t es = is_f64 ? 8 : 4;
  // 16-byte loads need w, g (and hg) to sit at the same phase of a 16-byte line
  const uintptr_t ph = reinterpret_cast<uintptr_t>(w) % 16;
  const bool vec_ok = reinterpret_cast<uintptr_t>(w) % es == 0 &&
                      reinterpret_cast<uintptr_t>(g) % 16 == ph &&
                      (hg == nullptr || reinterpret_cast<uintptr_t>(hg) % 16 == ph);
  SalParams p{w, g, hg, offsets, nseg, out, nullptr, nullptr, nullptr};
  const bool direct = max_len >= 0 && max_len <= part::kSalDirectMax;
  if (direct)
    return is_f64 ? dispatch<double, false>(p, vec_ok, nseg, grid_mode, max_grid, st)
                  : dispatch<float, false>(p, vec_ok, nseg, grid_mode, max_grid, st);

  const part::SalWorkspace ws = part::sal_workspace(nseg, n);
  if (workspace == nullptr || workspace_bytes < ws.bytes ||
      reinterpret_cast<uintptr_t>(workspace) % 256 != 0)
    return cudaErrorInvalidValue;
  auto* base = static_cast<unsigned char*>(workspace);
  auto* cum = reinterpret_cast<int64_t*>(base + ws.cum_off);
  auto* item_seg = reinterpret_cast<int32_t*>(base + ws.item_off);
  auto* partial = reinterpret_cast<double*>(base + ws.partial_off);
  saliency_plan_kernel<<<1, kPlanThreads, 0, st>>>(offsets, nseg, cum, item_seg);
  int e = static_cast<int>(cudaGetLastError());
  if (e) return e;
  p.cum = cum;
  p.item_seg = item_seg;
  p.partial = partial;
  const int64_t work = part::sal_max_items(nseg, n);
  e = is_f64 ? dispatch<double, true>(p, vec_ok, work, grid_mode, max_grid, st)
             : dispatch<float, true>(p, vec_ok, work, grid_mode, max_grid, st);
  if (e) return e;
  const int64_t warps_per_block = 256 / 32;
  const unsigned blocks = static_cast<unsigned>(part::ceil_div(nseg, warps_per_block));
  saliency_combine_kernel<<<blocks, 256, 0, st>>>(cum, nseg, partial, out);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace zc::cuda
