// Bindings of the fused-reduction CUDA kernels (segmented saliency, fisher, NASWOT).
//
// Tier 2 of three: the Python adapters in zcfast/ops/ check devices, dtypes, contiguity and
// shapes of the torch tensors and pass raw device pointers, sizes and the current stream here;
// this layer re-checks what a wrong call could turn into an out-of-bounds access (sizes, null
// pointers, workspace) and raises ValueError, then calls the torch-free launchers of
// csrc/cuda/*.cu and turns a CUDA error into RuntimeError. The GIL is released while launching.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "bind.hpp"
#if ZC_WITH_CUDA
#include "cuda/launch.hpp"
#endif

namespace py = pybind11;

namespace zc {
#if ZC_WITH_CUDA
namespace {

void check(int err, const char* what) {
  if (err != 0)
    throw std::runtime_error(std::string("zcfast CUDA ") + what + ": " + cuda::error_string(err));
}

void require(bool ok, const std::string& msg) {
  if (!ok) throw py::value_error(msg);
}

template <class T>
T* ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

}  // namespace

void bind_cuda_kernels(py::module_& c) {
  c.attr("SALIENCY_DIRECT_MAX") = cuda::segment_saliency_direct_max();
  c.attr("NASWOT_MAX_BATCH") = cuda::kNaswotMaxBatch;

  c.def(
      "segment_saliency_workspace_bytes",
      [](int64_t nseg, int64_t n) {
        require(nseg >= 0 && n >= 0, "segment_saliency_workspace_bytes: nseg and n must be >= 0");
        return cuda::segment_saliency_workspace_bytes(nseg, n);
      },
      py::arg("nseg"), py::arg("n"),
      "Bytes of scratch the split (long-segment) mode of segment_saliency needs.");

  c.def(
      "segment_saliency",
      [](uintptr_t w, uintptr_t g, uintptr_t hg, uintptr_t offsets, int64_t nseg, int64_t n,
         uintptr_t out, bool is_f64, int64_t max_len, uintptr_t workspace,
         int64_t workspace_bytes, uintptr_t stream, int grid_mode, int64_t max_grid) {
        require(nseg >= 0 && n >= 0, "segment_saliency: nseg and n must be >= 0");
        require(grid_mode == 0 || grid_mode == 1, "segment_saliency: grid_mode must be 0 or 1");
        require(max_grid >= 0, "segment_saliency: max_grid must be >= 0 (0 = no cap)");
        if (nseg == 0) return;
        require(out != 0, "segment_saliency: null device pointer (out)");
        // n == 0: every segment is empty; the launcher zero-fills out and reads nothing else
        require(n == 0 || (w && g && offsets), "segment_saliency: null device pointer");
        const bool direct = max_len >= 0 && max_len <= cuda::segment_saliency_direct_max();
        if (!direct && n > 0) {
          const int64_t need = cuda::segment_saliency_workspace_bytes(nseg, n);
          require(workspace != 0 && workspace_bytes >= need && workspace % 256 == 0,
                  "segment_saliency: long segments need a 256-byte aligned workspace of " +
                      std::to_string(need) + " bytes, got " + std::to_string(workspace_bytes));
        }
        py::gil_scoped_release nogil;
        check(cuda::segment_saliency(ptr<const void>(w), ptr<const void>(g),
                                     hg ? ptr<const void>(hg) : nullptr,
                                     ptr<const int64_t>(offsets), nseg, n, ptr<double>(out), is_f64,
                                     max_len, workspace ? ptr<void>(workspace) : nullptr,
                                     workspace_bytes, stream, grid_mode, max_grid),
              "segment_saliency");
      },
      py::arg("w"), py::arg("g"), py::arg("hg"), py::arg("offsets"), py::arg("nseg"), py::arg("n"),
      py::arg("out"), py::arg("is_f64"), py::arg("max_len"), py::arg("workspace"),
      py::arg("workspace_bytes"), py::arg("stream"), py::arg("grid_mode") = 0,
      py::arg("max_grid") = 0,
      "out (nseg, 5) float64 <- per-segment (sum|wg|, sum wg, sum g^2, sum w hg, sum w^2).");

  c.def(
      "fisher_channels",
      [](uintptr_t a, uintptr_t g, int64_t B, int64_t C, int64_t HW, uintptr_t out, bool is_f64,
         uintptr_t stream, int64_t max_grid) {
        require(B >= 0 && C >= 0 && HW >= 0, "fisher_channels: B, C, HW must be >= 0");
        require(max_grid >= 0, "fisher_channels: max_grid must be >= 0 (0 = no cap)");
        if (C == 0) return;
        // B == 0 or HW == 0: nothing to read (a, g may be null), out is zero-filled
        require(out != 0 && (B == 0 || HW == 0 || (a && g)), "fisher_channels: null device pointer");
        py::gil_scoped_release nogil;
        check(cuda::fisher_channels(ptr<const void>(a), ptr<const void>(g), B, C, HW,
                                    ptr<double>(out), is_f64, stream, max_grid),
              "fisher_channels");
      },
      py::arg("a"), py::arg("g"), py::arg("B"), py::arg("C"), py::arg("HW"), py::arg("out"),
      py::arg("is_f64"), py::arg("stream"), py::arg("max_grid") = 0,
      "out (C,) float64 <- 0.5 * mean_b (sum_hw a g)^2 for a, g (B, C, HW) contiguous.");

  c.def(
      "naswot_kernel",
      [](uintptr_t x, uintptr_t order, uintptr_t ptr_, int64_t B, int64_t stride, int64_t ROW,
         int64_t L, int64_t K, uintptr_t out, bool is_f64, uintptr_t stream, int split,
         int64_t max_clusters) {
        require(B >= 0 && ROW >= 0 && L >= 0 && K >= 0 && stride >= 0,
                "naswot_kernel: sizes must be >= 0");
        require(B <= cuda::kNaswotMaxBatch,
                "naswot_kernel: batch " + std::to_string(B) + " exceeds " +
                    std::to_string(cuda::kNaswotMaxBatch));
        require(split >= 0 && split <= 8, "naswot_kernel: split must be 0 (auto) .. 8");
        require(max_clusters >= 0, "naswot_kernel: max_clusters must be >= 0 (0 = no cap)");
        if (K == 0 || B == 0 || L == 0 || ROW == 0) return 0;  // nothing launched
        require(ROW % L == 0, "naswot_kernel: ROW must be a multiple of L");
        require(B == 1 || stride >= ROW,
                "naswot_kernel: the sample stride " + std::to_string(stride) +
                    " is smaller than a sample's " + std::to_string(ROW) + " features");
        require(x && order && ptr_ && out, "naswot_kernel: null device pointer");
        const int64_t st = stride < ROW ? ROW : stride;  // B == 1: the stride is never used
        int used = 0;
        {
          py::gil_scoped_release nogil;
          check(cuda::naswot_kernel(ptr<const void>(x), ptr<const int64_t>(order),
                                    ptr<const int64_t>(ptr_), B, st, ROW, L, K, ptr<float>(out),
                                    is_f64, split, stream, max_clusters, &used),
                "naswot_kernel");
        }
        return used;
      },
      py::arg("x"), py::arg("order"), py::arg("ptr"), py::arg("B"), py::arg("stride"),
      py::arg("ROW"), py::arg("L"), py::arg("K"), py::arg("out"), py::arg("is_f64"),
      py::arg("stream"), py::arg("split") = 0, py::arg("max_clusters") = 0,
      "out (K, B, B) float32 += per-candidate sums of +-1 code Gram matrices (exact). Returns the "
      "thread-block cluster size the launch used (0: nothing to launch).");
}
#endif
}  // namespace zc
