// Fisher channel reduction (zcfast/ops/fisher.py): for activations a and their gradients g,
// both (B, C, HW) contiguous,  out[c] = 0.5 / B * sum_b ( sum_hw a[b,c,hw] * g[b,c,hw] )^2.
//
// Two shapes of work, both over a persistent grid of 256-thread blocks and both without atomics:
// - rows of HW >= kFisherSmallHW elements (conv outputs): one block per channel; sub-warps of W
//   lanes (W = the row's 16-byte vector count rounded up to a power of two, at most 32) each take
//   one (sample, channel) row at a time, stream it with 16-byte loads, reduce the dot product with
//   an xor butterfly inside the sub-warp, and square-accumulate over their samples in order; the
//   block then adds its sub-warps' sums in slot order.
// - short rows (the linear head, HW = 1): a block covers 32 consecutive channels x 8 sample
//   groups, a warp reading 32 consecutive channels of one sample (coalesced); the 8 groups are
//   added in order through shared memory.
// Dot products accumulate in float64 (products of float32 inputs are exact there), because the
// per-row dot is squared: cancellation inside it would be amplified.
#include <cuda_runtime.h>

#include "common.cuh"
#include "launch.hpp"
#include "partition.hpp"

namespace zc::cuda {

namespace {
using namespace detail;

constexpr int kThreads = 256;
constexpr int kUnroll = 4;
constexpr int kSmallGroups = kThreads / 32;  // sample groups of the short-row kernel

template <class T, int V>
__global__ void __launch_bounds__(kThreads)
    fisher_rows_kernel(const T* __restrict__ a, const T* __restrict__ g, int64_t B, int64_t C,
                       int64_t HW, int W, double* __restrict__ out) {
  __shared__ double part_sum[kThreads];
  const int tid = threadIdx.x;
  const int sub = tid & (W - 1);  // lane inside the sub-warp
  const int slot = tid / W;       // sub-warp id = the sample it starts at
  const int nslots = kThreads / W;
  const int64_t nvec = HW / V;  // V divides HW (checked by the launcher)
  const double scale = 0.5 / static_cast<double>(B);
  for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
    double acc = 0.0;
    // every lane runs the same number of iterations: the butterfly needs the whole warp
    for (int64_t b0 = 0; b0 < B; b0 += nslots) {
      const int64_t b = b0 + slot;
      double d = 0.0;
      if (b < B) {
        const T* pa = a + (b * C + c) * HW;
        const T* pg = g + (b * C + c) * HW;
        int64_t v = sub;
        for (; v + (kUnroll - 1) * W < nvec; v += kUnroll * W) {
          T av[kUnroll][V], gv[kUnroll][V];
#pragma unroll
          for (int u = 0; u < kUnroll; ++u) {
            load_vec<T, V>(pa + (v + u * W) * V, av[u]);
            load_vec<T, V>(pg + (v + u * W) * V, gv[u]);
          }
#pragma unroll
          for (int u = 0; u < kUnroll; ++u)
#pragma unroll
            for (int k = 0; k < V; ++k)
              d = fma(static_cast<double>(av[u][k]), static_cast<double>(gv[u][k]), d);
        }
        for (; v < nvec; v += W) {
          T av[V], gv[V];
          load_vec<T, V>(pa + v * V, av);
          load_vec<T, V>(pg + v * V, gv);
#pragma unroll
          for (int k = 0; k < V; ++k) d = fma(static_cast<double>(av[k]), static_cast<double>(gv[k]), d);
        }
      }
      d = group_sum(d, W);  // the row's dot product, in every lane of the sub-warp
      acc = fma(d, d, acc);
    }
    if (sub == 0) part_sum[slot] = acc;
    __syncthreads();
    if (tid == 0) {
      double s = 0.0;
      for (int k = 0; k < nslots; ++k) s += part_sum[k];
      out[c] = s * scale;
    }
    __syncthreads();  // part_sum is reused by the next channel
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    fisher_small_kernel(const T* __restrict__ a, const T* __restrict__ g, int64_t B, int64_t C,
                        int64_t HW, double* __restrict__ out) {
  __shared__ double part_sum[kSmallGroups][32];
  const int cx = threadIdx.x & 31, by = threadIdx.x >> 5;
  const double scale = 0.5 / static_cast<double>(B);
  for (int64_t c0 = static_cast<int64_t>(blockIdx.x) * 32; c0 < C;
       c0 += static_cast<int64_t>(gridDim.x) * 32) {
    const int64_t c = c0 + cx;
    double acc = 0.0;
    if (c < C) {
#pragma unroll 4
      for (int64_t b = by; b < B; b += kSmallGroups) {
        const T* pa = a + (b * C + c) * HW;
        const T* pg = g + (b * C + c) * HW;
        double d = 0.0;
        for (int64_t h = 0; h < HW; ++h)
          d = fma(static_cast<double>(__ldg(pa + h)), static_cast<double>(__ldg(pg + h)), d);
        acc = fma(d, d, acc);
      }
    }
    part_sum[by][cx] = acc;
    __syncthreads();
    if (by == 0 && c < C) {
      double s = 0.0;
#pragma unroll
      for (int k = 0; k < kSmallGroups; ++k) s += part_sum[k][cx];
      out[c] = s * scale;
    }
    __syncthreads();
  }
}

template <class T, int V>
int launch_rows(const T* a, const T* g, int64_t B, int64_t C, int64_t HW, double* out,
                int64_t cap, cudaStream_t st) {
  const int W = part::fisher_width(HW / V);
  const void* k = reinterpret_cast<const void*>(&fisher_rows_kernel<T, V>);
  unsigned grid = 0;
  int e = persistent_grid(k, kThreads, 0, C, &grid, cap);
  if (e) return e;
  fisher_rows_kernel<T, V><<<grid, kThreads, 0, st>>>(a, g, B, C, HW, W, out);
  return static_cast<int>(cudaGetLastError());
}

template <class T>
int launch(const void* a_, const void* g_, int64_t B, int64_t C, int64_t HW, double* out,
           int64_t cap, cudaStream_t st) {
  const T* a = static_cast<const T*>(a_);
  const T* g = static_cast<const T*>(g_);
  if (HW < part::kFisherSmallHW) {
    const void* k = reinterpret_cast<const void*>(&fisher_small_kernel<T>);
    unsigned grid = 0;
    int e = persistent_grid(k, kThreads, 0, part::ceil_div(C, 32), &grid, cap);
    if (e) return e;
    fisher_small_kernel<T><<<grid, kThreads, 0, st>>>(a, g, B, C, HW, out);
    return static_cast<int>(cudaGetLastError());
  }
  constexpr int V = 16 / sizeof(T);
  // every row starts on a 16-byte boundary when both bases do and a row is whole vectors
  const bool vec_ok = HW % V == 0 && reinterpret_cast<uintptr_t>(a) % 16 == 0 &&
                      reinterpret_cast<uintptr_t>(g) % 16 == 0;
  return vec_ok ? launch_rows<T, V>(a, g, B, C, HW, out, cap, st)
                : launch_rows<T, 1>(a, g, B, C, HW, out, cap, st);
}

}  // namespace

int fisher_channels(const void* a, const void* g, int64_t B, int64_t C, int64_t HW, double* out,
                    bool is_f64, uintptr_t stream, int64_t max_grid) {
  if (C <= 0) return 0;
  if (!out || B < 0 || HW < 0) return cudaErrorInvalidValue;
  const cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  // no sample or no position: every sum is empty, F_c = 0 (a and g may be null: nothing is read)
  if (B == 0 || HW == 0) return static_cast<int>(cudaMemsetAsync(out, 0, C * sizeof(double), st));
  if (!a || !g) return cudaErrorInvalidValue;
  return is_f64 ? launch<double>(a, g, B, C, HW, out, max_grid, st)
                : launch<float>(a, g, B, C, HW, out, max_grid, st);
}

}  // namespace zc::cuda
