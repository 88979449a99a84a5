// Bindings of the fused-reduction CUDA kernels (segmented saliency, fisher, NASWOT).
// Filled in by the CUDA kernels work (issue 5); until then no kernel is registered here.
#include <pybind11/pybind11.h>

#include "bind.hpp"

namespace zc {
#if ZC_WITH_CUDA
void bind_cuda_kernels(pybind11::module_& c) {}
#endif
}  // namespace zc
