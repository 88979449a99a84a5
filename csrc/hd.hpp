// ZC_HD marks the small pure functions that both host code and CUDA device code call (hashing,
// work decomposition): __host__ __device__ under nvcc, a plain inline function elsewhere.
#pragma once

#if defined(__CUDACC__)
#define ZC_HD __host__ __device__ __forceinline__
#else
#define ZC_HD inline
#endif
