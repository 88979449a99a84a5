// Device helpers shared by the fused-reduction kernels: 16-byte vector loads, deterministic
// warp reductions, and cached launch geometry. No torch, no pybind11.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace zc::cuda::detail {

constexpr unsigned kFullMask = 0xffffffffu;

// V consecutive elements of T from p into a[0..V). For V > 1, p must be 16-byte aligned
// (float4 / double2: one 128-bit load per thread). `.cs` (streaming): every byte is read once,
// so the lines are marked evict-first in L1 and L2.
template <class T, int V>
struct VecLoad;

template <class T>
struct VecLoad<T, 1> {
  static __device__ __forceinline__ void run(const T* p, T (&a)[1]) { a[0] = __ldcs(p); }
};
template <>
struct VecLoad<float, 4> {
  static __device__ __forceinline__ void run(const float* p, float (&a)[4]) {
    const float4 v = __ldcs(reinterpret_cast<const float4*>(p));
    a[0] = v.x;
    a[1] = v.y;
    a[2] = v.z;
    a[3] = v.w;
  }
};
template <>
struct VecLoad<double, 2> {
  static __device__ __forceinline__ void run(const double* p, double (&a)[2]) {
    const double2 v = __ldcs(reinterpret_cast<const double2*>(p));
    a[0] = v.x;
    a[1] = v.y;
  }
};

template <class T, int V>
__device__ __forceinline__ void load_vec(const T* p, T (&a)[V]) {
  VecLoad<T, V>::run(p, a);
}

// Butterfly (xor) sum over aligned groups of `width` lanes (a power of two <= 32). Every lane of
// a group ends with the same bits (a + b == b + a at each step), and the order of the additions
// is fixed, so the result is reproducible run to run. All 32 lanes must call it.
__device__ __forceinline__ double group_sum(double v, int width) {
  for (int o = width >> 1; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

// Multiprocessor count of the current device (cached per device).
int sm_count(int* sms);

// Resident blocks per multiprocessor of `kernel` (cached per kernel and device); >= 1.
int blocks_per_sm(const void* kernel, int threads, size_t dyn_smem, int* blocks);

// Persistent grid: enough blocks to fill every multiprocessor, never more than there is work,
// at most `cap` blocks when cap > 0 (part::persistent_blocks).
int persistent_grid(const void* kernel, int threads, size_t dyn_smem, int64_t work, unsigned* grid,
                    int64_t cap = 0);

// Raise a kernel's dynamic shared-memory limit once per device (above 48 KB it is opt-in).
int ensure_dyn_smem(const void* kernel, size_t bytes);

}  // namespace zc::cuda::detail
