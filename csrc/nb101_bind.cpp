// zcfast._C.nb101: NAS-Bench-101 cells (see nb101.hpp) and the checksums of its data file.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "bind.hpp"
#include "checksum.hpp"
#include "nb101.hpp"

namespace py = pybind11;

namespace zc {

namespace {

using nb101::Code;

py::array_t<uint64_t> to_array(const std::vector<Code>& v) {
  py::array_t<uint64_t> out(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

using CodeArray = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>;

std::string_view bytes_view(const py::bytes& b) {
  char* p = nullptr;
  py::ssize_t n = 0;
  if (PyBytes_AsStringAndSize(b.ptr(), &p, &n) != 0) throw py::error_already_set();
  return {p, static_cast<size_t>(n)};
}

}  // namespace

void bind_nb101(py::module_& m) {
  using namespace nb101;
  auto s = m.def_submodule("nb101", "NAS-Bench-101 cells: pruning, hash, raw codes, moves");
  s.attr("MAX_VERTICES") = kMaxVertices;
  s.attr("MAX_EDGES") = kMaxEdges;
  s.attr("NUM_SLOTS") = kSlots;
  s.attr("NUM_MOVES") = kMoves;
  s.attr("NUM_FEATURES") = kFeatures;
  py::list names;
  for (int o = 0; o < kOps; ++o) names.append(kOpNames[o]);
  s.attr("INTERIOR_OPS") = py::tuple(names);

  s.def(
      "prune",
      [](int n, uint32_t edges, const std::vector<int>& ops) {
        if (static_cast<int>(ops.size()) != std::max(n - 2, 0))
          throw std::invalid_argument("need " + std::to_string(std::max(n - 2, 0)) +
                                      " interior op ids for " + std::to_string(n) +
                                      " vertices, got " + std::to_string(ops.size()));
        Cell c;
        c.n = n;
        c.edges = edges;
        for (size_t k = 0; k < ops.size(); ++k) {
          if (ops[k] < 0 || ops[k] >= kOps)
            throw std::invalid_argument("op id " + std::to_string(ops[k]) + " is out of range [0, 2]");
          c.ops[k + 1] = static_cast<uint8_t>(ops[k]);
        }
        return prune(c);
      },
      py::arg("n"), py::arg("edges"), py::arg("ops"),
      "raw code of the pruned cell (n vertices, edge bits by slot, n-2 interior op ids); 0 if invalid");
  s.def("valid_code", &valid_code, py::arg("code"));
  s.def(
      "decode",
      [](Code code) {
        const Cell c = decode(code);
        std::vector<int> ops;
        for (int v = 1; v < c.n - 1; ++v) ops.push_back(c.ops[v]);
        return py::make_tuple(c.n, c.edges, ops);
      },
      py::arg("code"), "raw code -> (n, edge bits, interior op ids)");
  s.def("hash", &hash_hex, py::arg("code"), "official module hash (32 hex digits)");
  s.def("key", &key, py::arg("code"), "64-bit key: the hash's first 8 bytes, big-endian");
  s.def(
      "hashes",
      [](CodeArray codes) {
        std::vector<std::string> out(static_cast<size_t>(codes.size()));
        const uint64_t* p = codes.data();
        for (py::ssize_t i = 0; i < codes.size(); ++i) out[i] = hash_hex(p[i]);
        return out;
      },
      py::arg("codes"));
  s.def(
      "keys",
      [](CodeArray codes) {
        py::array_t<uint64_t> out(codes.size());
        const uint64_t* p = codes.data();
        uint64_t* o = out.mutable_data();
        for (py::ssize_t i = 0; i < codes.size(); ++i) o[i] = key(p[i]);
        return out;
      },
      py::arg("codes"));
  s.def(
      "embed7",
      [](Code code) {
        const Form7 f = embed7(code);
        return py::make_tuple(f.edges, std::vector<int>(f.ops.begin(), f.ops.end()), f.live);
      },
      py::arg("code"), "7-vertex form: (edge bits, 5 interior op ids, live interior vertices)");
  s.def("apply_move", &apply_move, py::arg("code"), py::arg("move"));
  s.def(
      "sample",
      [](int64_t n, uint64_t seed) {
        if (n < 0) throw std::invalid_argument("sample size must be >= 0, got " + std::to_string(n));
        Rng rng(seed);
        std::vector<Code> v(static_cast<size_t>(n));
        for (auto& c : v) c = sample(rng);
        return to_array(v);
      },
      py::arg("n"), py::arg("seed"));
  s.def(
      "sample_distinct",
      [](int64_t n, uint64_t seed) {
        Rng rng(seed);
        return to_array(sample_distinct(n, rng));
      },
      py::arg("n"), py::arg("seed"));
  s.def(
      "mutate",
      [](Code code, uint64_t seed) {
        Rng rng(seed);
        return mutate(code, rng);
      },
      py::arg("code"), py::arg("seed"));
  s.def("neighbours", &neighbours, py::arg("code"));
  s.def(
      "features",
      [](CodeArray codes) {
        py::array_t<float> out({codes.size(), static_cast<py::ssize_t>(kFeatures)});
        const uint64_t* p = codes.data();
        float* o = out.mutable_data();
        for (py::ssize_t i = 0; i < codes.size(); ++i) features(p[i], o + i * kFeatures);
        return out;
      },
      py::arg("codes"), "(N, 36) float32 predictor inputs");
  s.def(
      "from_decisions",
      [](const std::vector<int>& ops, const std::vector<int>& edges) {
        if (ops.size() != kInterior || edges.size() != kSlots)
          throw std::invalid_argument("decisions are 5 op ids and 21 edge bits, got " +
                                      std::to_string(ops.size()) + " and " +
                                      std::to_string(edges.size()));
        uint8_t o[kInterior];
        uint32_t e = 0;
        for (int k = 0; k < kInterior; ++k) {
          if (ops[k] < 0 || ops[k] >= kOps)
            throw std::invalid_argument("op id " + std::to_string(ops[k]) + " is out of range [0, 2]");
          o[k] = static_cast<uint8_t>(ops[k]);
        }
        for (int k = 0; k < kSlots; ++k) {
          if (edges[k] != 0 && edges[k] != 1)
            throw std::invalid_argument("edge decision " + std::to_string(edges[k]) + " is not 0 or 1");
          e |= static_cast<uint32_t>(edges[k]) << k;
        }
        return from_decisions(o, e);
      },
      py::arg("ops"), py::arg("edges"), "raw code of the decided cell, 0 if it is invalid");
  s.def(
      "to_decisions",
      [](Code code) {
        uint8_t o[kInterior];
        uint32_t e = 0;
        to_decisions(code, o, e);
        std::vector<int> ops(o, o + kInterior), edges(kSlots);
        for (int k = 0; k < kSlots; ++k) edges[k] = static_cast<int>((e >> k) & 1U);
        return py::make_tuple(ops, edges);
      },
      py::arg("code"));

  // checksums of the official data file (and of the hash's building block)
  s.def(
      "md5_hex",
      [](const py::bytes& b) {
        const auto v = bytes_view(b);
        char out[32];
        md5_hex(v.data(), v.size(), out);
        return std::string(out, 32);
      },
      py::arg("data"));
  s.def(
      "crc32c",
      [](const py::bytes& b, uint32_t crc) {
        const auto v = bytes_view(b);
        return crc32c(v.data(), v.size(), crc);
      },
      py::arg("data"), py::arg("crc") = 0);
  s.def(
      "masked_crc32c",
      [](const py::bytes& b) {
        const auto v = bytes_view(b);
        return mask_crc(crc32c(v.data(), v.size()));
      },
      py::arg("data"), "TFRecord's masked CRC-32C");
}

}  // namespace zc
