// Counter-based weight initialisation on the GPU: a grid-stride loop over (segment, chunk)
// work items; each thread writes 4 elements kThreads apart, so every store is coalesced (no RNG
// state, no atomics).
#include <cuda_runtime.h>

#include "../hash.hpp"
#include "launch.hpp"
#include "partition.hpp"

namespace zc::cuda {

namespace {
constexpr int kThreads = 256;
constexpr int kChunk = kThreads * 4;  // elements per work item

__global__ void fill_uniform_kernel(float* __restrict__ out, int64_t n_out,
                                    const int64_t* __restrict__ off,
                                    const uint32_t* __restrict__ arch,
                                    const uint32_t* __restrict__ slot,
                                    const float* __restrict__ bound, int64_t nseg,
                                    uint64_t seed) {
  // One block walks segments s = blockIdx.x, +gridDim.x, ...; inside a segment the block
  // walks chunks of kChunk elements. Positions outside [0, n_out) are never written (the host
  // adapter rejects such offsets before the launch; this keeps a direct caller memory-safe).
  for (int64_t s = blockIdx.x; s < nseg; s += gridDim.x) {
    const int64_t begin = off[s], len = off[s + 1] - off[s];
    const StreamKey k = stream_key(seed, arch[s], slot[s]);
    const float b = bound[s];
    for (int64_t base = 0; base < len; base += kChunk) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t i = base + threadIdx.x + j * kThreads;  // coalesced per j
        const int64_t pos = begin + i;
        if (i < len && pos >= 0 && pos < n_out) out[pos] = uniform_pm1(k, static_cast<uint32_t>(i)) * b;
      }
    }
  }
}
}  // namespace

const char* error_string(int err) { return cudaGetErrorString(static_cast<cudaError_t>(err)); }

int device_count(int* count) { return static_cast<int>(cudaGetDeviceCount(count)); }

int runtime_version(int* version) { return static_cast<int>(cudaRuntimeGetVersion(version)); }

int fill_uniform(float* out, int64_t n_out, const int64_t* offsets, const uint32_t* arch,
                 const uint32_t* slot, const float* bound, int64_t nseg, uint64_t seed,
                 uintptr_t stream, int64_t max_grid) {
  if (nseg <= 0 || n_out <= 0) return 0;  // nothing can be written
  if (!out || !offsets || !arch || !slot || !bound) return cudaErrorInvalidValue;
  int dev = 0, sms = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (e != cudaSuccess) return e;
  const int64_t grid = part::init_blocks(sms, nseg, max_grid);
  fill_uniform_kernel<<<static_cast<unsigned>(grid), kThreads, 0,
                        reinterpret_cast<cudaStream_t>(stream)>>>(out, n_out, offsets, arch, slot,
                                                                  bound, nseg, seed);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace zc::cuda
