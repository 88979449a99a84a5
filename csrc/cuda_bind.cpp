// CUDA bindings. When the module is built without nvcc, only the capability report exists;
// the Python adapters (zcfast.ops) then never select the cuda backend. Pointers arrive as
// integers (tensor.data_ptr()) and have been validated by the Python adapter.
#include <pybind11/pybind11.h>

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
template <class T>
T* ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}
}  // namespace
void bind_cuda_kernels(py::module_& c);  // more kernels, csrc/cuda_bind_kernels.cpp
#endif

void bind_cuda(py::module_& m) {
  m.attr("WITH_CUDA") = static_cast<bool>(ZC_WITH_CUDA);
#if ZC_WITH_CUDA
  m.attr("CUDA_ARCHS") = ZC_CUDA_ARCHS;
  auto c = m.def_submodule("cuda", "CUDA kernels (device pointers + stream)");
  c.def("device_count", []() {
    int n = 0;
    // No driver or no device is not an error for the capability query: report 0.
    return cuda::device_count(&n) == 0 ? n : 0;
  });
  c.def("runtime_version", []() {
    int v = 0;
    check(cuda::runtime_version(&v), "runtime_version");
    return v;
  });
  c.def(
      "fill_uniform",
      [](uintptr_t out, int64_t n_out, uintptr_t off, uintptr_t arch, uintptr_t slot,
         uintptr_t bound, int64_t nseg, uint64_t seed, uintptr_t stream, int64_t max_grid) {
        if (nseg < 0 || n_out < 0 || max_grid < 0)
          throw py::value_error("fill_uniform: nseg, n_out and max_grid must be >= 0");
        if (nseg == 0 || n_out == 0) return;  // nothing can be written: no launch
        if (!out || !off || !arch || !slot || !bound)
          throw py::value_error("fill_uniform: null device pointer");
        py::gil_scoped_release nogil;
        check(cuda::fill_uniform(ptr<float>(out), n_out, ptr<const int64_t>(off),
                                 ptr<const uint32_t>(arch), ptr<const uint32_t>(slot),
                                 ptr<const float>(bound), nseg, seed, stream, max_grid),
              "fill_uniform");
      },
      py::arg("out"), py::arg("n_out"), py::arg("offsets"), py::arg("arch"), py::arg("slot"),
      py::arg("bound"), py::arg("nseg"), py::arg("seed"), py::arg("stream"), py::arg("max_grid") = 0,
      "out[off[s]:off[s+1]] = U[-1,1) * bound[s]; offsets must lie within [0, n_out] (the kernel "
      "never writes outside it).");
  bind_cuda_kernels(c);
#else
  m.attr("CUDA_ARCHS") = "";
#endif
}

}  // namespace zc
