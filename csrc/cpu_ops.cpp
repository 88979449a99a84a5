// Native CPU implementations of fused ops for CPU tensors (the "cpu" backend): one pass over
// the flat buffers, float64 accumulation, segments split across threads by element count.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bind.hpp"

namespace py = pybind11;

namespace zc {

namespace {

// out[s] = (sum |w g|, sum w g, sum g^2, sum w hg, sum w^2) over [off[s], off[s+1])
template <class T>
void saliency_range(const T* w, const T* g, const T* hg, const int64_t* off, int64_t s0,
                    int64_t s1, double* out) {
  for (int64_t s = s0; s < s1; ++s) {
    double a = 0, b = 0, c = 0, d = 0, e = 0;
    for (int64_t i = off[s]; i < off[s + 1]; ++i) {
      const double wi = static_cast<double>(w[i]), gi = static_cast<double>(g[i]);
      const double wg = wi * gi;
      a += std::fabs(wg);
      b += wg;
      c += gi * gi;
      e += wi * wi;
      if (hg) d += wi * static_cast<double>(hg[i]);
    }
    double* o = out + 5 * s;
    o[0] = a;
    o[1] = b;
    o[2] = c;
    o[3] = d;
    o[4] = e;
  }
}

template <class T>
void saliency(const T* w, const T* g, const T* hg, const int64_t* off, int64_t nseg, double* out,
              int threads) {
  const int64_t total = off[nseg] - off[0];
  int nt = std::max(1, std::min<int>(threads, static_cast<int>(total / (1 << 18)) + 1));
  if (nt == 1 || nseg < 2) {
    saliency_range(w, g, hg, off, 0, nseg, out);
    return;
  }
  // boundaries by cumulative element count so threads get equal work
  std::vector<int64_t> cut(nt + 1, nseg);
  cut[0] = 0;
  int64_t s = 0;
  for (int t = 1; t < nt; ++t) {
    const int64_t target = off[0] + total * t / nt;
    while (s < nseg && off[s] < target) ++s;
    cut[t] = s;
  }
  std::vector<std::thread> pool;
  for (int t = 0; t < nt; ++t)
    if (cut[t] < cut[t + 1])
      pool.emplace_back(saliency_range<T>, w, g, hg, off, cut[t], cut[t + 1], out);
  for (auto& th : pool) th.join();
}

}  // namespace

void bind_cpu_ops(py::module_& m) {
  auto c = m.def_submodule("cpu", "native CPU fused ops (numpy views of CPU tensors)");
  c.def(
      "segment_saliency",
      [](py::array w, py::array g, py::object hg, py::array_t<int64_t, py::array::c_style> off,
         py::array_t<double, py::array::c_style> out, int threads) {
        const bool f64 = w.dtype().is(py::dtype::of<double>());
        if (!f64 && !w.dtype().is(py::dtype::of<float>()))
          throw std::invalid_argument("segment_saliency (cpu): w must be float32 or float64");
        auto same = [&](const py::array& a, const char* name) {
          if (!a.dtype().is(w.dtype()) || a.ndim() != 1 || a.size() != w.size() ||
              !(a.flags() & py::array::c_style))
            throw std::invalid_argument(std::string("segment_saliency (cpu): ") + name +
                                        " must be a contiguous 1-D array like w");
        };
        if (w.ndim() != 1 || !(w.flags() & py::array::c_style))
          throw std::invalid_argument("segment_saliency (cpu): w must be contiguous 1-D");
        same(g, "g");
        py::array hga;
        if (!hg.is_none()) {
          hga = hg.cast<py::array>();
          same(hga, "hg");
        }
        const int64_t nseg = off.size() - 1;
        if (nseg < 0 || out.ndim() != 2 || out.shape(0) != nseg || out.shape(1) != 5)
          throw std::invalid_argument("segment_saliency (cpu): out must be (S, 5) float64");
        const int64_t* o = off.data();
        for (int64_t s = 0; s < nseg; ++s)
          if (o[s] < 0 || o[s] > o[s + 1] || o[s + 1] > w.size())
            throw std::invalid_argument("segment_saliency (cpu): bad offsets at segment " +
                                        std::to_string(s));
        double* po = out.mutable_data();
        py::gil_scoped_release nogil;
        if (f64)
          saliency<double>(static_cast<const double*>(w.data()), static_cast<const double*>(g.data()),
                           hg.is_none() ? nullptr : static_cast<const double*>(hga.data()), o, nseg,
                           po, threads);
        else
          saliency<float>(static_cast<const float*>(w.data()), static_cast<const float*>(g.data()),
                          hg.is_none() ? nullptr : static_cast<const float*>(hga.data()), o, nseg,
                          po, threads);
      },
      py::arg("w"), py::arg("g"), py::arg("hg"), py::arg("offsets"), py::arg("out"),
      py::arg("threads") = 1);
}

}  // namespace zc
