#include <pybind11/numpy.h>

#include <algorithm>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bind.hpp"
#include "nb201.hpp"

namespace py = pybind11;

namespace zc {

void bind_nb201(py::module_& m) {
  using namespace nb201;
  auto s = m.def_submodule("nb201", "NAS-Bench-201 cell encodings");
  s.attr("NUM_EDGES") = kEdges;
  s.attr("NUM_OPS") = kOps;
  s.attr("SPACE_SIZE") = kSpaceSize;
  py::list names;
  for (int o = 0; o < kOps; ++o) names.append(kOpNames[o]);
  s.attr("OP_NAMES") = py::tuple(names);

  s.def("parse", [](const std::string& a) { return encode(parse(a)); }, py::arg("arch"),
        "NB201 arch string -> cell code (ValueError naming the bad part)");
  s.def("ops_of", [](int64_t c) { check_code(c); return decode(static_cast<int32_t>(c)); },
        py::arg("code"), "cell code -> 6 op ids");
  s.def(
      "code_of",
      [](const std::vector<int64_t>& ops) {
        if (ops.size() != kEdges)
          throw std::invalid_argument("an NB201 cell has 6 edges, got an op vector of length " +
                                      std::to_string(ops.size()));
        Ops o{};
        for (int e = 0; e < kEdges; ++e) {
          if (ops[e] < 0 || ops[e] >= kOps)
            throw std::invalid_argument("op id " + std::to_string(ops[e]) + " on edge " +
                                        std::to_string(e) + " is out of range [0, 4]");
          o[e] = static_cast<uint8_t>(ops[e]);
        }
        return encode(o);
      },
      py::arg("ops"), "6 op ids -> cell code");
  s.def("to_string", [](int64_t c) { check_code(c); return to_string(decode(static_cast<int32_t>(c))); },
        py::arg("code"));
  s.def("canonical", [](int64_t c) { check_code(c); return canonical(decode(static_cast<int32_t>(c))); },
        py::arg("code"));
  s.def("neighbours", [](int64_t c) { check_code(c); return neighbours(static_cast<int32_t>(c)); },
        py::arg("code"));
  s.def(
      "sample",
      [](int64_t n, uint64_t seed) {
        if (n < 0) throw std::invalid_argument("sample size must be >= 0, got " + std::to_string(n));
        Rng rng(seed);
        py::array_t<int32_t> out(n);
        auto* p = out.mutable_data();
        for (int64_t i = 0; i < n; ++i) p[i] = sample(rng);
        return out;
      },
      py::arg("n"), py::arg("seed"), "n cells drawn uniformly with replacement");
  s.def(
      "sample_distinct",
      [](int64_t n, uint64_t seed) {
        Rng rng(seed);
        const auto v = sample_distinct(n, rng);
        py::array_t<int32_t> out(static_cast<py::ssize_t>(v.size()));
        std::copy(v.begin(), v.end(), out.mutable_data());
        return out;
      },
      py::arg("n"), py::arg("seed"), "n distinct cells drawn uniformly without replacement");
  s.def(
      "mutate",
      [](int64_t c, uint64_t seed) {
        check_code(c);
        Rng rng(seed);
        return mutate(static_cast<int32_t>(c), rng);
      },
      py::arg("code"), py::arg("seed"), "one-edge mutation to a different op, seeded");
  s.def(
      "canonical_all",
      []() {
        std::vector<std::string> out(kSpaceSize);
        for (int32_t c = 0; c < kSpaceSize; ++c) out[c] = canonical(decode(c));
        return out;
      },
      "canonical strings of all 15,625 codes (index = code)");
}

}  // namespace zc
