// pybind11 face of the search driver (zcfast._C.search): validation and conversion only; the
// algorithms live in search.cpp / predictor.cpp. The Python API is zcfast.search.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <memory>
#include <string>

#include "bind.hpp"
#include "search.hpp"

namespace py = pybind11;

namespace zc {
namespace {
using search::Config;
using search::GroundTruth;
using search::Result;
using search::Search;
using space::Code;
using space::Space;
using space::SpacePtr;

using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;
using I32 = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;
using U64 = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>;

std::vector<Code> to_codes(const U64& a, const char* what) {
  if (a.ndim() != 1)
    throw std::invalid_argument(std::string(what) + " must be 1-D, got " +
                                std::to_string(a.ndim()) + " dimensions");
  return std::vector<Code>(a.data(), a.data() + a.size());
}

std::vector<double> to_vec(const F64& a, const char* what) {
  if (a.ndim() != 1)
    throw std::invalid_argument(std::string(what) + " must be 1-D, got " +
                                std::to_string(a.ndim()) + " dimensions");
  return std::vector<double>(a.data(), a.data() + a.size());
}

std::shared_ptr<const std::vector<double>> full_table(const py::object& scores) {
  if (scores.is_none()) return nullptr;
  return std::make_shared<const std::vector<double>>(to_vec(scores.cast<F64>(), "scores"));
}

// feasible: None or a 1-D array of booleans / 0-1 integers by row; cost: None or 1-D floats.
std::shared_ptr<const search::Task> make_task(const py::object& feasible, const py::object& cost) {
  if (feasible.is_none() && cost.is_none()) return nullptr;
  auto t = std::make_shared<search::Task>();
  if (!feasible.is_none()) {
    auto a = feasible.cast<py::array_t<uint8_t, py::array::c_style | py::array::forcecast>>();
    if (a.ndim() != 1)
      throw std::invalid_argument("feasible must be 1-D, got " + std::to_string(a.ndim()) +
                                  " dimensions");
    t->feasible.assign(a.data(), a.data() + a.size());
    for (auto& v : t->feasible) v = v != 0;
  }
  if (!cost.is_none()) t->cost = to_vec(cost.cast<F64>(), "cost");
  return t;
}

template <class T>
py::array_t<T> arr(const std::vector<T>& v) {
  py::array_t<T> out(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

py::dict result_dict(const Result& r) {
  py::dict d;
  d["trained"] = arr(r.trained);
  d["val"] = arr(r.val);
  d["test"] = arr(r.test);
  d["test_curve"] = arr(r.test_curve);
  d["best_val_curve"] = arr(r.best_val_curve);
  d["oracle_test_curve"] = arr(r.oracle_test_curve);
  d["queries"] = r.queries;
  d["distinct"] = r.distinct;
  d["revisits"] = r.revisits;
  d["steps"] = r.steps;
  d["proposals"] = r.proposals;
  d["scores_used"] = r.scores_used;
  d["asks"] = r.asks;
  d["failed"] = r.failed;
  d["members"] = r.members;
  if (!r.hv_curve.empty() || r.acc_hi != r.acc_lo) {  // multi-objective mode
    d["hv_curve"] = arr(r.hv_curve);
    d["hv_val_curve"] = arr(r.hv_val_curve);
    d["front"] = arr(r.front);
    d["hv_ranges"] = py::dict(py::arg("acc_lo") = r.acc_lo, py::arg("acc_hi") = r.acc_hi,
                              py::arg("cost_lo") = r.cost_lo, py::arg("cost_hi") = r.cost_hi);
  }
  return d;
}

// Holds the shared tables alive for the Search (which keeps shared_ptrs anyway).
struct PySearch {
  std::unique_ptr<Search> s;
};
}  // namespace

void bind_search(py::module_& m) {
  // ---- spaces: the driver's hot path of each search space (space.hpp)
  auto sp = m.def_submodule("space", "search spaces as the C++ driver sees them (space.hpp)");
  py::class_<Space, std::shared_ptr<Space>>(sp, "Space",
                                            "a search space's hot path: keys, sampling, mutation, "
                                            "neighbours, predictor encoding, policy decisions")
      .def_property_readonly("name", &Space::name)
      .def_property_readonly("size", &Space::size, "distinct networks (0: unknown)")
      .def_property_readonly("features", &Space::features)
      .def_property_readonly("neighbourhood_size", &Space::neighbourhood_size)
      .def_property_readonly("decision_sizes", &Space::decision_sizes)
      .def("check", [](const Space& s, uint64_t c) { s.check(c); }, py::arg("code"))
      .def("key", [](const Space& s, uint64_t c) { s.check(c); return s.key(c); }, py::arg("code"))
      .def("keys",
           [](const Space& s, const U64& codes) {
             auto c = to_codes(codes, "codes");
             std::vector<uint64_t> out(c.size());
             for (size_t i = 0; i < c.size(); ++i) {
               s.check(c[i]);
               out[i] = s.key(c[i]);
             }
             return arr(out);
           },
           py::arg("codes"))
      .def("describe", [](const Space& s, uint64_t c) { return s.describe(c); }, py::arg("code"))
      .def("sample",
           [](const Space& s, int64_t n, uint64_t seed) {
             if (n < 0) throw std::invalid_argument("sample size must be >= 0, got " + std::to_string(n));
             Rng rng(seed);
             std::vector<uint64_t> out(static_cast<size_t>(n));
             for (auto& c : out) c = s.sample(rng);
             return arr(out);
           },
           py::arg("n"), py::arg("seed"), "n architectures drawn with the space's sampling rule")
      .def("sample_distinct",
           [](const Space& s, int64_t n, uint64_t seed) {
             Rng rng(seed);
             return arr(s.sample_distinct(n, rng));
           },
           py::arg("n"), py::arg("seed"), "n architectures with distinct keys")
      .def("mutate",
           [](const Space& s, uint64_t c, uint64_t seed) {
             s.check(c);
             Rng rng(seed);
             return s.mutate(c, rng);
           },
           py::arg("code"), py::arg("seed"))
      .def("neighbours",
           [](const Space& s, uint64_t c) {
             s.check(c);
             std::vector<Code> out;
             s.neighbours(c, out);
             return arr(out);
           },
           py::arg("code"))
      .def("encode",
           [](const Space& s, const U64& codes) {
             auto c = to_codes(codes, "codes");
             const int F = s.features();
             py::array_t<float> out({static_cast<py::ssize_t>(c.size()), static_cast<py::ssize_t>(F)});
             float* o = out.mutable_data();
             for (size_t i = 0; i < c.size(); ++i) {
               s.check(c[i]);
               s.encode(c[i], o + i * F);
             }
             return out;
           },
           py::arg("codes"), "(n, features) float32 predictor encodings")
      .def("to_decisions",
           [](const Space& s, uint64_t c) {
             s.check(c);
             std::vector<uint8_t> d(s.decision_sizes().size());
             s.to_decisions(c, d.data());
             return arr(d);
           },
           py::arg("code"))
      .def("from_decisions",
           [](const Space& s, const std::vector<int64_t>& d) -> py::object {
             const auto& sizes = s.decision_sizes();
             if (d.size() != sizes.size())
               throw std::invalid_argument("expected " + std::to_string(sizes.size()) +
                                           " decisions, got " + std::to_string(d.size()));
             std::vector<uint8_t> u(d.size());
             for (size_t i = 0; i < d.size(); ++i) {
               if (d[i] < 0 || d[i] >= sizes[i])
                 throw std::invalid_argument("decision " + std::to_string(i) + " = " +
                                             std::to_string(d[i]) + " is out of range [0, " +
                                             std::to_string(sizes[i] - 1) + "]");
               u[i] = static_cast<uint8_t>(d[i]);
             }
             Code c;
             if (!s.from_decisions(u.data(), &c)) return py::none();
             return py::int_(c);
           },
           py::arg("decisions"), "the architecture of a decision vector, or None when invalid");
  sp.def("nb201", []() { return std::const_pointer_cast<Space>(space::make_nb201()); },
         "the NAS-Bench-201 space (code = key = sum_e op_e 5^e)");
  sp.def("nb101", []() { return std::const_pointer_cast<Space>(space::make_nb101()); },
         "the NAS-Bench-101 space (code = raw code of a pruned cell, key = official hash)");

  // ---- the driver
  auto s = m.def_submodule("search", "zero-cost NAS search driver (RAND, AE, RL, BP)");

  py::class_<Config>(s, "Config", "search settings (see csrc/search.hpp for the meaning of each)")
      .def(py::init<>())
      .def_property(
          "algo", [](const Config& c) { return std::string(search::algo_name(c.algo)); },
          [](Config& c, const std::string& n) { c.algo = search::algo_from_name(n); })
      .def_readwrite("budget", &Config::budget)
      .def_readwrite("warmup", &Config::warmup)
      .def_readwrite("move", &Config::move)
      .def_readwrite("seed", &Config::seed)
      .def_readwrite("population", &Config::population)
      .def_readwrite("tournament", &Config::tournament)
      .def_readwrite("move_random_prob", &Config::move_random_prob)
      .def_readwrite("rl_lr", &Config::rl_lr)
      .def_readwrite("rl_momentum", &Config::rl_momentum)
      .def_readwrite("rl_warmup_batch", &Config::rl_warmup_batch)
      .def_readwrite("bp_batch", &Config::bp_batch)
      .def_readwrite("bp_hidden", &Config::bp_hidden)
      .def_readwrite("bp_iters", &Config::bp_iters)
      .def_readwrite("bp_warmup_iters", &Config::bp_warmup_iters)
      .def_readwrite("bp_pairs", &Config::bp_pairs)
      .def_readwrite("bp_lr", &Config::bp_lr)
      .def_readwrite("bp_weight_decay", &Config::bp_weight_decay)
      .def_readwrite("bp_candidates", &Config::bp_candidates)
      .def_readwrite("score_members", &Config::score_members)
      .def_readwrite("ensemble", &Config::ensemble)
      .def_readwrite("max_steps", &Config::max_steps)
      .def("validate", [](const Config& c) { search::validate(c); },
           "raise ValueError naming the first bad value");

  py::class_<GroundTruth, std::shared_ptr<GroundTruth>>(
      s, "GroundTruth",
      "the training oracle: validation/test accuracy of the cells of a universe, one row each")
      .def(py::init([](std::shared_ptr<Space> space, const U64& codes, const F64& val,
                       const F64& test) {
             return std::make_shared<GroundTruth>(space, to_codes(codes, "codes"),
                                                  to_vec(val, "val"), to_vec(test, "test"));
           }),
           py::arg("space"), py::arg("codes"), py::arg("val"), py::arg("test"))
      .def_property_readonly("rows", &GroundTruth::rows)
      .def_property_readonly("complete", &GroundTruth::complete,
                             "covers every network of the space (else: a pool)")
      .def("row_of_code", [](const GroundTruth& g, uint64_t c) {
             g.space()->check(c);
             return g.row_of_code(c);
           }, py::arg("code"), "row of an architecture, -1 when absent");

  py::class_<PySearch>(s, "Search", "one search run, driven by ask/tell or run()")
      .def(py::init([](const Config& cfg, std::shared_ptr<GroundTruth> gt, const py::object& scores,
                       const py::object& feasible, const py::object& cost) {
             return PySearch{std::make_unique<Search>(cfg, gt, full_table(scores),
                                                      make_task(feasible, cost))};
           }),
           py::arg("config"), py::arg("gt"), py::arg("scores") = py::none(),
           py::arg("feasible") = py::none(), py::arg("cost") = py::none(),
           "feasible: cells that may be trained (bool by row); cost: a second objective to "
           "minimise (by row); docs/hardware.md")
      .def(
          "ask",
          [](PySearch& p) {
            std::vector<int32_t> need;
            {
              py::gil_scoped_release nogil;
              need = p.s->ask();
            }
            return arr(need);
          },
          "advance until proxy scores are missing; returns their ground-truth rows (empty: finished)")
      .def(
          "tell",
          [](PySearch& p, const I32& rows, const F64& scores) {
            const auto m = static_cast<py::ssize_t>(p.s->config().score_members);
            if (rows.ndim() != 1 || scores.size() != rows.size() * m ||
                !(scores.ndim() == 1 || (scores.ndim() == 2 && scores.shape(1) == m)))
              throw std::invalid_argument("tell needs " + std::to_string(rows.size()) + " rows and " +
                                          std::to_string(rows.size()) + " x " + std::to_string(m) +
                                          " scores, got scores of " + std::to_string(scores.size()) +
                                          " values");
            p.s->tell(rows.data(), scores.data(), static_cast<size_t>(rows.size()));
          },
          py::arg("rows"), py::arg("scores"))
      .def("run",
           [](PySearch& p) {
             py::gil_scoped_release nogil;
             p.s->run();
           },
           "run to the end (needs a complete score table or no proxy)")
      .def_property_readonly("done", [](const PySearch& p) { return p.s->done(); })
      .def_property_readonly("pool", [](const PySearch& p) { return p.s->pool(); })
      .def_property_readonly("constrained", [](const PySearch& p) { return p.s->constrained(); })
      .def_property_readonly("multi_objective",
                             [](const PySearch& p) { return p.s->multi_objective(); })
      .def("result", [](const PySearch& p) { return result_dict(p.s->result()); })
      .def("policy", [](const PySearch& p) { return arr(p.s->policy()); },
           "RL: the probabilities of every decision's categories, concatenated")
      .def("pool_probabilities", [](const PySearch& p) { return arr(p.s->pool_probabilities()); },
           "RL in a pool or under a constraint: the policy restricted to the cells it may "
           "train, one probability per row (0 elsewhere)")
      .def("population", [](const PySearch& p) { return arr(p.s->population()); },
           "AE: population rows, oldest first");

  s.def(
      "bench",
      [](const Config& cfg, std::shared_ptr<GroundTruth> gt, const py::object& scores,
         int64_t repeats, const py::object& feasible, const py::object& cost) {
        auto table = full_table(scores);
        auto task = make_task(feasible, cost);
        search::BenchResult b;
        {
          py::gil_scoped_release nogil;
          b = search::bench(cfg, gt, table, repeats, task);
        }
        py::dict d;
        d["seconds"] = b.seconds;
        d["searches"] = b.searches;
        d["steps"] = b.steps;
        d["proposals"] = b.proposals;
        d["trained"] = b.trained;
        return d;
      },
      py::arg("config"), py::arg("gt"), py::arg("scores"), py::arg("repeats"),
      py::arg("feasible") = py::none(), py::arg("cost") = py::none(),
      "run `repeats` searches (seeds seed, seed+1, ...) in C++ and time them");

  py::class_<search::RankPredictor>(s, "RankPredictor",
                                    "pairwise-ranking MLP over a space's predictor encoding")
      .def(py::init([](std::shared_ptr<Space> space, int hidden, double lr, double wd,
                       uint64_t seed) {
             Rng rng(seed);
             return std::make_unique<search::RankPredictor>(space, hidden, lr, wd, rng);
           }),
           py::arg("space"), py::arg("hidden") = 32, py::arg("lr") = 3e-3,
           py::arg("weight_decay") = 5e-4, py::arg("seed") = 0)
      .def(
          "fit",
          [](search::RankPredictor& p, const U64& codes, const F64& y, int64_t iters,
             int64_t pairs, uint64_t seed) {
            auto c = to_codes(codes, "codes");
            auto t = to_vec(y, "y");
            Rng rng(seed);
            py::gil_scoped_release nogil;
            return p.fit(c, t, iters, pairs, rng);
          },
          py::arg("codes"), py::arg("y"), py::arg("iters") = 200, py::arg("pairs") = 64,
          py::arg("seed") = 0)
      .def("predict_many",
           [](const search::RankPredictor& p, const U64& codes) {
             std::vector<float> f;
             p.predict_many(to_codes(codes, "codes"), f);
             return arr(f);
           },
           py::arg("codes"))
      .def("predict", &search::RankPredictor::predict, py::arg("code"))
      .def(
          "pair_accuracy",
          [](const search::RankPredictor& p, const U64& codes, const F64& y) {
            return p.pair_accuracy(to_codes(codes, "codes"), to_vec(y, "y"));
          },
          py::arg("codes"), py::arg("y"));

  s.attr("ALGOS") = py::make_tuple("rand", "ae", "rl", "bp");
}

}  // namespace zc
