// Plain C++ launchers of the CUDA kernels (no torch, no pybind11 types). Every pointer is a
// device pointer; `stream` is a cudaStream_t passed as an integer. Each returns a cudaError_t
// as int (0 = success) so the binding layer can raise a Python error with its message.
#pragma once
#include <cstdint>

namespace zc::cuda {

const char* error_string(int err);
int device_count(int* count);
int runtime_version(int* version);

// Counter-based weight initialiser (see hash.hpp): out[off[s]:off[s+1]] = U[-1,1) * bound[s].
// The caller guarantees 0 <= off[s] <= off[s+1] <= n_out (zcfast/ops/init.py checks it on the
// host); the kernel also never writes outside [0, n_out), so a violated guarantee cannot corrupt
// memory. max_grid > 0 caps the grid (tests: every block walks several segments).
int fill_uniform(float* out, int64_t n_out, const int64_t* offsets, const uint32_t* arch,
                 const uint32_t* slot, const float* bound, int64_t nseg, uint64_t seed,
                 uintptr_t stream, int64_t max_grid = 0);

// ---- fused reductions of the packed engine (saliency.cu, fisher.cu, naswot.cu) -------------
// All outputs are deterministic (no atomics): the same inputs give the same bits on every run.

// Segmented saliency (zcfast/ops/saliency.py). w, g, hg: (n,) float32 or float64 (is_f64);
// hg may be null (column 3 is then 0); offsets: (nseg + 1) int64, non-decreasing within [0, n];
// out: (nseg, 5) float64, every row written:
//   out[s] = (sum |w g|, sum w g, sum g^2, sum w hg, sum w^2) over [offsets[s], offsets[s+1]).
// max_len: the longest segment if known (< 0: unknown). When 0 <= max_len <=
// segment_saliency_direct_max() every segment is one work item and `workspace` may be null;
// otherwise segments are cut into chunks and `workspace` (256-byte aligned) must hold
// segment_saliency_workspace_bytes(nseg, n) bytes. The result never depends on max_len.
// grid_mode: 0 = persistent grid (multiprocessors x resident blocks, each walking items
// blockIdx.x, + gridDim.x, ...), 1 = one block per work item (for comparison in benchmarks).
// max_grid > 0 caps the number of blocks of the main kernel (tests: every block walks several
// items). Every grid gives the same bits: an item is reduced by one block in a fixed order.
// n == 0 (every segment empty): out is zero-filled, nothing is launched, w and g may be null.
int segment_saliency(const void* w, const void* g, const void* hg, const int64_t* offsets,
                     int64_t nseg, int64_t n, double* out, bool is_f64, int64_t max_len,
                     void* workspace, int64_t workspace_bytes, uintptr_t stream,
                     int grid_mode = 0, int64_t max_grid = 0);
int64_t segment_saliency_workspace_bytes(int64_t nseg, int64_t n);
int64_t segment_saliency_direct_max();

// Fisher per channel (zcfast/ops/fisher.py). a, g: (B, C, HW) contiguous, float32 or float64;
// out: (C,) float64, out[c] = 0.5 / B * sum_b (sum_hw a g)^2. B == 0 or HW == 0: out is
// zero-filled without a kernel launch (a and g may be null). max_grid > 0 caps the grid.
int fisher_channels(const void* a, const void* g, int64_t B, int64_t C, int64_t HW, double* out,
                    bool is_f64, uintptr_t stream, int64_t max_grid = 0);

// NASWOT Gram accumulation (zcfast/ops/naswot.py). x: B rows of ROW float32/float64 values,
// row b starting at x + b * stride (stride >= ROW elements: a channel slice of a larger packed
// tensor is read in place), ROW a multiple of L; group q = x[b, q*L : (q+1)*L]; candidate k owns
// groups order[ptr[k] .. ptr[k+1]) (ptr: (K+1) int64, order: int64 group ids < ROW / L);
// out: (K, B, B) float32, out[k] += sum_q S_q S_q^T with S = +1 where x > 0 else -1.
// 1 <= B <= kNaswotMaxBatch. split: blocks per candidate (a thread-block cluster, 1..8), 0 = auto.
// max_clusters > 0 caps the number of clusters (tests: each cluster walks several candidates).
// *used_cluster (if not null) receives the cluster size the launch really used: a cluster the
// device cannot schedule falls back to one block per candidate (same exact result), and callers
// that asked for a size can see whether they got it.
constexpr int64_t kNaswotMaxBatch = 128;
int naswot_kernel(const void* x, const int64_t* order, const int64_t* ptr, int64_t B,
                  int64_t stride, int64_t ROW, int64_t L, int64_t K, float* out, bool is_f64,
                  int split, uintptr_t stream, int64_t max_clusters = 0,
                  int* used_cluster = nullptr);

}  // namespace zc::cuda
