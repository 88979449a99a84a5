// CPU weight initialiser: fills a flat float32 buffer made of segments, segment s being one
// parameter tensor of one candidate: out[off[s]:off[s+1]] = U[-1,1) * bound[s], drawn from the
// counter-based stream (seed, arch[s], slot[s]) of hash.hpp.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "bind.hpp"
#include "hash.hpp"

namespace py = pybind11;

namespace zc {

void bind_init(py::module_& m) {
  m.def(
      "fill_uniform",
      [](py::array_t<float, 0> out, py::array_t<int64_t, py::array::c_style | py::array::forcecast> offsets,
         py::array_t<uint32_t, py::array::c_style | py::array::forcecast> arch,
         py::array_t<uint32_t, py::array::c_style | py::array::forcecast> slot,
         py::array_t<float, py::array::c_style | py::array::forcecast> bound, uint64_t seed) {
        if (out.ndim() != 1 || out.strides(0) != static_cast<py::ssize_t>(sizeof(float)))
          throw std::invalid_argument("fill_uniform: out must be a contiguous 1-D float32 array");
        const py::ssize_t nseg = arch.size();
        if (slot.size() != nseg || bound.size() != nseg || offsets.size() != nseg + 1)
          throw std::invalid_argument(
              "fill_uniform: need len(offsets) == len(arch)+1 == len(slot)+1 == len(bound)+1, got " +
              std::to_string(offsets.size()) + ", " + std::to_string(nseg) + ", " +
              std::to_string(slot.size()) + ", " + std::to_string(bound.size()));
        const int64_t* off = offsets.data();
        const py::ssize_t n = out.size();
        for (py::ssize_t s = 0; s < nseg; ++s)
          if (off[s] < 0 || off[s] > off[s + 1] || off[s + 1] > n)
            throw std::invalid_argument("fill_uniform: segment " + std::to_string(s) + " [" +
                                        std::to_string(off[s]) + ", " + std::to_string(off[s + 1]) +
                                        ") is not inside the buffer of " + std::to_string(n));
        float* o = out.mutable_data();
        const uint32_t* a = arch.data();
        const uint32_t* sl = slot.data();
        const float* b = bound.data();
        py::gil_scoped_release nogil;
        for (py::ssize_t s = 0; s < nseg; ++s) {
          const StreamKey k = stream_key(seed, a[s], sl[s]);
          const float bs = b[s];
          const int64_t len = off[s + 1] - off[s];
          float* dst = o + off[s];
          for (int64_t i = 0; i < len; ++i) dst[i] = uniform_pm1(k, static_cast<uint32_t>(i)) * bs;
        }
      },
      py::arg("out"), py::arg("offsets"), py::arg("arch"), py::arg("slot"), py::arg("bound"),
      py::arg("seed"),
      "Fill segments of a flat float32 buffer with U[-bound, bound) from counter-based streams");
}

}  // namespace zc
