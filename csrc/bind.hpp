// Each part of the compiled module registers its own bindings (keeps files independent).
#pragma once
#include <pybind11/pybind11.h>

namespace zc {
void bind_nb201(pybind11::module_& m);
void bind_nb101(pybind11::module_& m);
void bind_nbnlp(pybind11::module_& m);  // after bind_search: adds zcfast._C.space.nbnlp
void bind_init(pybind11::module_& m);
void bind_cpu_ops(pybind11::module_& m);
void bind_search(pybind11::module_& m);
void bind_cuda(pybind11::module_& m);  // real kernels when built with nvcc, else reports absence
}  // namespace zc
