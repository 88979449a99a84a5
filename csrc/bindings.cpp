// zcfast._C: torch-free compiled core (NB201 and NB101 encodings, weight initialiser, search driver,
// optional CUDA kernels).
#include <pybind11/pybind11.h>

#include "bind.hpp"

PYBIND11_MODULE(_C, m) {
  m.doc() = "zcfast compiled core (C++17, optional CUDA), bound with pybind11";
  zc::bind_nb201(m);
  zc::bind_nb101(m);
  zc::bind_init(m);
  zc::bind_cpu_ops(m);
  zc::bind_search(m);
  zc::bind_nbnlp(m);
  zc::bind_cuda(m);
}
