// Cached launch geometry for the persistent kernels (see common.cuh).
#include <map>
#include <mutex>
#include <tuple>

#include "common.cuh"
#include "partition.hpp"

namespace zc::cuda::detail {

namespace {
std::mutex g_mu;
std::map<int, int> g_sms;                                               // device -> SMs
std::map<std::tuple<const void*, int, int, size_t>, int> g_occupancy;  // -> blocks per SM
std::map<std::pair<const void*, int>, size_t> g_smem;                  // -> raised limit
}  // namespace

int sm_count(int* sms) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    auto it = g_sms.find(dev);
    if (it != g_sms.end()) {
      *sms = it->second;
      return 0;
    }
  }
  int n = 0;
  e = cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
  if (e != cudaSuccess) return e;
  std::lock_guard<std::mutex> lk(g_mu);
  g_sms[dev] = n;
  *sms = n;
  return 0;
}

int blocks_per_sm(const void* kernel, int threads, size_t dyn_smem, int* blocks) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  const auto key = std::make_tuple(kernel, dev, threads, dyn_smem);
  {
    std::lock_guard<std::mutex> lk(g_mu);
    auto it = g_occupancy.find(key);
    if (it != g_occupancy.end()) {
      *blocks = it->second;
      return 0;
    }
  }
  int n = 0;
  e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, dyn_smem);
  if (e != cudaSuccess) return e;
  if (n < 1) n = 1;
  std::lock_guard<std::mutex> lk(g_mu);
  g_occupancy[key] = n;
  *blocks = n;
  return 0;
}

int persistent_grid(const void* kernel, int threads, size_t dyn_smem, int64_t work, unsigned* grid,
                    int64_t cap) {
  int sms = 0, per = 0;
  int e = sm_count(&sms);
  if (e) return e;
  e = blocks_per_sm(kernel, threads, dyn_smem, &per);
  if (e) return e;
  *grid = static_cast<unsigned>(part::persistent_blocks(static_cast<int64_t>(sms) * per, work, cap));
  return 0;
}

int ensure_dyn_smem(const void* kernel, size_t bytes) {
  if (bytes <= 48 * 1024) return 0;
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  const auto key = std::make_pair(kernel, dev);
  {
    std::lock_guard<std::mutex> lk(g_mu);
    auto it = g_smem.find(key);
    if (it != g_smem.end() && it->second >= bytes) return 0;
  }
  e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(bytes));
  if (e != cudaSuccess) return e;
  std::lock_guard<std::mutex> lk(g_mu);
  g_smem[key] = bytes;
  return 0;
}

}  // namespace zc::cuda::detail
