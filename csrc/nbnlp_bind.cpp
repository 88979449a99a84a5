// zcfast._C.nbnlp: NAS-Bench-NLP cells (see nbnlp.hpp), and zcfast._C.space.nbnlp(), the space as
// the search driver sees it (nbnlp_space.cpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "bind.hpp"
#include "nbnlp.hpp"
#include "space.hpp"

namespace py = pybind11;

namespace zc {

namespace {

using nbnlp::Cell;
using nbnlp::Code;
using CodeArray = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>;

// A cell from the Python node form (hidden, ops, inputs, outputs); format checks only (validity
// is nbnlp::invalid_reason).
Cell make_cell(int hidden, const std::vector<int>& ops, const std::vector<std::vector<int>>& inputs,
               const std::vector<int>& outputs) {
  if (ops.size() != inputs.size())
    throw std::invalid_argument(std::to_string(ops.size()) + " ops for " +
                                std::to_string(inputs.size()) + " input lists");
  if (hidden < 1 || hidden > nbnlp::kMaxHidden || static_cast<int>(outputs.size()) != hidden)
    throw std::invalid_argument("a cell has 1 to 3 hidden states and one output node per state, got " +
                                std::to_string(hidden) + " and " + std::to_string(outputs.size()));
  if (ops.size() > 255) throw std::invalid_argument("too many nodes: " + std::to_string(ops.size()));
  Cell c;
  c.hidden = hidden;
  for (size_t j = 0; j < ops.size(); ++j) {
    if (ops[j] < 0 || ops[j] >= nbnlp::kOps)
      throw std::invalid_argument("op id " + std::to_string(ops[j]) + " is out of range [0, 6]");
    if (inputs[j].size() > nbnlp::kMaxInputs)
      throw std::invalid_argument("node " + std::to_string(j) + " has " +
                                  std::to_string(inputs[j].size()) + " inputs (at most 3)");
    nbnlp::Node nd;
    nd.op = static_cast<uint8_t>(ops[j]);
    for (int s : inputs[j]) {
      if (s < 0 || s > 255) throw std::invalid_argument("source id " + std::to_string(s) + " is out of range");
      nd.in[nd.n_in++] = static_cast<uint8_t>(s);
    }
    c.nodes.push_back(nd);
  }
  for (int i = 0; i < hidden; ++i) c.out[i] = outputs[i];
  return c;
}

py::tuple cell_tuple(const Cell& c) {
  std::vector<int> ops;
  std::vector<std::vector<int>> ins;
  for (const auto& nd : c.nodes) {
    ops.push_back(nd.op);
    ins.emplace_back(nd.in.begin(), nd.in.begin() + nd.n_in);
  }
  return py::make_tuple(c.hidden, ops, ins, std::vector<int>(c.out.begin(), c.out.begin() + c.hidden));
}

py::array_t<uint64_t> to_array(const std::vector<Code>& v) {
  py::array_t<uint64_t> out(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

}  // namespace

void bind_nbnlp(py::module_& m) {
  using namespace nbnlp;
  auto s = m.def_submodule("nbnlp", "NAS-Bench-NLP cells: validity, canonical form, code table, moves");
  s.attr("MAX_NODES") = kMaxNodes;
  s.attr("NUM_FEATURES") = kFeatures;
  s.attr("NUM_DECISIONS") = kDecisions;
  s.attr("POOL_NEIGHBOURS") = kPoolNeighbours;
  py::list names;
  for (int o = 0; o < kOps; ++o) names.append(kOpNames[o]);
  s.attr("OP_NAMES") = py::tuple(names);

  s.def("invalid_reason",
        [](int hidden, const std::vector<int>& ops, const std::vector<std::vector<int>>& inputs,
           const std::vector<int>& outputs) {
          return invalid_reason(make_cell(hidden, ops, inputs, outputs));
        },
        py::arg("hidden"), py::arg("ops"), py::arg("inputs"), py::arg("outputs"),
        "why the cell is invalid ('' if valid)");
  s.def("canonical",
        [](int hidden, const std::vector<int>& ops, const std::vector<std::vector<int>>& inputs,
           const std::vector<int>& outputs) {
          return cell_tuple(canonical(make_cell(hidden, ops, inputs, outputs)));
        },
        py::arg("hidden"), py::arg("ops"), py::arg("inputs"), py::arg("outputs"),
        "canonical form (hidden, ops, inputs, outputs) of a valid cell");
  s.def("intern",
        [](int hidden, const std::vector<int>& ops, const std::vector<std::vector<int>>& inputs,
           const std::vector<int>& outputs, uint64_t tag) {
          return intern(make_cell(hidden, ops, inputs, outputs), tag);
        },
        py::arg("hidden"), py::arg("ops"), py::arg("inputs"), py::arg("outputs"), py::arg("tag") = 0,
        "register a valid cell (canonicalised); its code (tag > 0: a tagged handle)");
  s.def("known", &known, py::arg("code"));
  s.def("cell", [](Code c) { return cell_tuple(lookup(c)); }, py::arg("code"),
        "the canonical cell of a code: (hidden, ops, inputs, outputs)");
  s.def("json", [](Code c) { return to_json(lookup(c)); }, py::arg("code"),
        "the canonical cell's JSON recepie");
  s.def("hash", &hash_hex, py::arg("code"), "the network's key (32 hex digits)");
  s.def("key", &key, py::arg("code"), "the 64-bit key (= the network's untagged code)");
  s.def("tag", &tag_of, py::arg("code"));
  s.def("table_size", &table_size);
  s.def("hashes",
        [](CodeArray codes) {
          std::vector<std::string> out(static_cast<size_t>(codes.size()));
          const uint64_t* p = codes.data();
          for (py::ssize_t i = 0; i < codes.size(); ++i) out[i] = hash_hex(p[i]);
          return out;
        },
        py::arg("codes"));
  s.def("generate",
        [](uint64_t seed, int hidden, int intermediate) {
          Rng rng(seed);
          bool ok = false;
          Cell c = generate(rng, hidden, intermediate, &ok);
          return py::make_tuple(cell_tuple(c), ok);
        },
        py::arg("seed"), py::arg("hidden"), py::arg("intermediate"),
        "one generator draw: (pruned cell in creation order, passes the sanity check)");
  s.def("sample",
        [](int64_t n, uint64_t seed) {
          if (n < 0) throw std::invalid_argument("sample size must be >= 0, got " + std::to_string(n));
          Rng rng(seed);
          std::vector<Code> v(static_cast<size_t>(n));
          for (auto& c : v) c = sample(rng);
          return to_array(v);
        },
        py::arg("n"), py::arg("seed"));
  s.def("sample_distinct",
        [](int64_t n, uint64_t seed) {
          Rng rng(seed);
          return to_array(sample_distinct(n, rng));
        },
        py::arg("n"), py::arg("seed"));
  s.def("moves", [](Code c) { return to_array(moves(c)); }, py::arg("code"),
        "codes of every move in order (0: invalid)");
  s.def("neighbours", [](Code c) { return to_array(neighbours(c)); }, py::arg("code"));
  s.def("mutate",
        [](Code c, uint64_t seed) {
          Rng rng(seed);
          return mutate(c, rng);
        },
        py::arg("code"), py::arg("seed"));
  s.def("features",
        [](CodeArray codes) {
          py::array_t<float> out({codes.size(), static_cast<py::ssize_t>(kFeatures)});
          const uint64_t* p = codes.data();
          float* o = out.mutable_data();
          for (py::ssize_t i = 0; i < codes.size(); ++i) features(p[i], o + i * kFeatures);
          return out;
        },
        py::arg("codes"), "(N, 101) float32 predictor inputs");
  s.def("to_decisions",
        [](Code c) {
          std::vector<uint8_t> d(kDecisions);
          to_decisions(c, d.data());
          return std::vector<int>(d.begin(), d.end());
        },
        py::arg("code"));
  s.def("from_decisions",
        [](const std::vector<int>& d) {
          if (d.size() != static_cast<size_t>(kDecisions))
            throw std::invalid_argument("expected 125 decisions, got " + std::to_string(d.size()));
          std::vector<uint8_t> u(d.size());
          for (size_t i = 0; i < d.size(); ++i) {
            const int hi = i % kPerSlot == 0 ? kOps : (i % kPerSlot == 1 ? kMaxHidden : kNoInput);
            if (d[i] < 0 || d[i] > hi)
              throw std::invalid_argument("decision " + std::to_string(i) + " = " +
                                          std::to_string(d[i]) + " is out of range [0, " +
                                          std::to_string(hi) + "]");
            u[i] = static_cast<uint8_t>(d[i]);
          }
          return from_decisions(u.data());
        },
        py::arg("decisions"), "code of the decided cell, 0 if it is invalid");

  // the driver's view, next to the other spaces of zcfast._C.space (bound by bind_search)
  auto sp = m.attr("space").cast<py::module_>();
  sp.def("nbnlp", []() { return std::const_pointer_cast<space::Space>(space::make_nbnlp()); },
         "the NAS-Bench-NLP space (code = handle of a canonical cell, key = MD5 of its JSON)");
}

}  // namespace zc
