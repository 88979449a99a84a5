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

using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;
using I32 = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

std::vector<double> to_vec(const F64& a, const char* what) {
  if (a.ndim() != 1)
    throw std::invalid_argument(std::string(what) + " must be 1-D, got " +
                                std::to_string(a.ndim()) + " dimensions");
  return std::vector<double>(a.data(), a.data() + a.size());
}

std::shared_ptr<const std::vector<double>> full_table(const py::object& scores) {
  if (scores.is_none()) return nullptr;
  auto v = to_vec(scores.cast<F64>(), "scores");
  if (v.size() != static_cast<size_t>(nb201::kSpaceSize))
    throw std::invalid_argument("a complete score table needs 15,625 values (one per cell code), got " +
                                std::to_string(v.size()));
  return std::make_shared<const std::vector<double>>(std::move(v));
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
  return d;
}

// Holds the shared tables alive for the Search (which keeps shared_ptrs anyway).
struct PySearch {
  std::unique_ptr<Search> s;
};
}  // namespace

void bind_search(py::module_& m) {
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
      .def_readwrite("max_steps", &Config::max_steps)
      .def("validate", [](const Config& c) { search::validate(c); },
           "raise ValueError naming the first bad value");

  py::class_<GroundTruth, std::shared_ptr<GroundTruth>>(
      s, "GroundTruth", "validation/test accuracy tables by cell code (15,625 each)")
      .def(py::init([](const F64& val, const F64& test) {
             return std::make_shared<GroundTruth>(to_vec(val, "val"), to_vec(test, "test"));
           }),
           py::arg("val"), py::arg("test"));

  py::class_<PySearch>(s, "Search", "one search run, driven by ask/tell or run()")
      .def(py::init([](const Config& cfg, std::shared_ptr<GroundTruth> gt, const py::object& scores) {
             return PySearch{std::make_unique<Search>(cfg, gt, full_table(scores))};
           }),
           py::arg("config"), py::arg("gt"), py::arg("scores") = py::none())
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
          "advance until proxy scores are missing; returns their cell codes (empty: finished)")
      .def(
          "tell",
          [](PySearch& p, const I32& codes, const F64& scores) {
            if (codes.ndim() != 1 || scores.ndim() != 1 || codes.size() != scores.size())
              throw std::invalid_argument("tell needs two 1-D arrays of equal length, got " +
                                          std::to_string(codes.size()) + " codes and " +
                                          std::to_string(scores.size()) + " scores");
            p.s->tell(codes.data(), scores.data(), static_cast<size_t>(codes.size()));
          },
          py::arg("codes"), py::arg("scores"))
      .def("run",
           [](PySearch& p) {
             py::gil_scoped_release nogil;
             p.s->run();
           },
           "run to the end (needs a complete score table or no proxy)")
      .def_property_readonly("done", [](const PySearch& p) { return p.s->done(); })
      .def("result", [](const PySearch& p) { return result_dict(p.s->result()); })
      .def("policy", [](const PySearch& p) { return arr(p.s->policy()); },
           "RL: 30 probabilities (6 edges x 5 ops, row-major)")
      .def("population", [](const PySearch& p) { return arr(p.s->population()); },
           "AE: population codes, oldest first");

  s.def(
      "bench",
      [](const Config& cfg, std::shared_ptr<GroundTruth> gt, const py::object& scores,
         int64_t repeats) {
        auto table = full_table(scores);
        search::BenchResult b;
        {
          py::gil_scoped_release nogil;
          b = search::bench(cfg, gt, table, repeats);
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
      "run `repeats` searches (seeds seed, seed+1, ...) in C++ and time them");

  py::class_<search::RankPredictor>(s, "RankPredictor",
                                    "pairwise-ranking MLP over the one-hot cell encoding")
      .def(py::init([](int hidden, double lr, double wd, uint64_t seed) {
             Rng rng(seed);
             return std::make_unique<search::RankPredictor>(hidden, lr, wd, rng);
           }),
           py::arg("hidden") = 32, py::arg("lr") = 3e-3, py::arg("weight_decay") = 5e-4,
           py::arg("seed") = 0)
      .def(
          "fit",
          [](search::RankPredictor& p, const I32& codes, const F64& y, int64_t iters,
             int64_t pairs, uint64_t seed) {
            std::vector<int32_t> c(codes.data(), codes.data() + codes.size());
            auto t = to_vec(y, "y");
            Rng rng(seed);
            py::gil_scoped_release nogil;
            return p.fit(c, t, iters, pairs, rng);
          },
          py::arg("codes"), py::arg("y"), py::arg("iters") = 200, py::arg("pairs") = 64,
          py::arg("seed") = 0)
      .def("predict_all",
           [](const search::RankPredictor& p) {
             std::vector<float> f;
             p.predict_all(f);
             return arr(f);
           })
      .def("predict", &search::RankPredictor::predict, py::arg("code"))
      .def(
          "pair_accuracy",
          [](const search::RankPredictor& p, const I32& codes, const F64& y) {
            std::vector<int32_t> c(codes.data(), codes.data() + codes.size());
            return p.pair_accuracy(c, to_vec(y, "y"));
          },
          py::arg("codes"), py::arg("y"));

  s.attr("ALGOS") = py::make_tuple("rand", "ae", "rl", "bp");
}

}  // namespace zc
