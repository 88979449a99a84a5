// NAS-Bench-201 behind the search driver's space interface (space.hpp).
//
// code = key = the cell code sum_e op_e 5^e (0..15,624): the benchmark trained every one of the
// 15,625 cells, isomorphic ones included, so each cell is its own network here (canonical() in
// nb201.hpp gives the isomorphism class for users who want to merge them). Sampling is uniform
// over codes; mutation and neighbours change one edge to a different op (nb201.hpp); the
// predictor reads the one-hot cell (6 edges x 5 ops); the policy makes one 5-way decision per edge.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "nb201.hpp"
#include "space.hpp"

namespace zc::space {

namespace {

class NB201Space final : public Space {
 public:
  NB201Space() : decisions_(nb201::kEdges, nb201::kOps) {}

  std::string name() const override { return "nb201"; }
  uint64_t size() const override { return nb201::kSpaceSize; }
  bool dense_keys() const override { return true; }

  void check(Code c) const override {
    if (c >= static_cast<Code>(nb201::kSpaceSize))
      throw std::invalid_argument("NB201 cell code " + std::to_string(c) +
                                  " is out of range [0, 15624]");
  }
  Key key(Code c) const override { return c; }
  std::string describe(Code c) const override {
    check(c);
    return nb201::to_string(nb201::decode(static_cast<int32_t>(c)));
  }

  Code sample(Rng& rng) const override { return static_cast<Code>(nb201::sample(rng)); }

  std::vector<Code> sample_distinct(int64_t n, Rng& rng) const override {
    std::vector<Code> out;
    if (n * 4 <= nb201::kSpaceSize) {  // sparse draw: rejection against a seen-table
      std::vector<uint8_t> seen(nb201::kSpaceSize, 0);
      out.reserve(static_cast<size_t>(n));
      while (static_cast<int64_t>(out.size()) < n) {
        const int32_t c = nb201::sample(rng);
        if (seen[c]) continue;
        seen[c] = 1;
        out.push_back(static_cast<Code>(c));
      }
      return out;
    }
    for (int32_t c : nb201::sample_distinct(n, rng)) out.push_back(static_cast<Code>(c));
    return out;
  }

  Code mutate(Code c, Rng& rng) const override {
    check(c);
    return static_cast<Code>(nb201::mutate(static_cast<int32_t>(c), rng));
  }

  void neighbours(Code c, std::vector<Code>& out) const override {
    check(c);
    const auto nb = nb201::neighbours(static_cast<int32_t>(c));
    out.assign(nb.begin(), nb.end());
  }
  int neighbourhood_size() const override { return nb201::kNeighbours; }

  int features() const override { return nb201::kEdges * nb201::kOps; }
  double active_features() const override { return nb201::kEdges; }
  void encode(Code c, float* out) const override {
    const nb201::Ops ops = nb201::decode(static_cast<int32_t>(c));
    std::fill(out, out + features(), 0.0f);
    for (int e = 0; e < nb201::kEdges; ++e) out[e * nb201::kOps + ops[e]] = 1.0f;
  }

  const std::vector<int>& decision_sizes() const override { return decisions_; }
  bool from_decisions(const uint8_t* d, Code* out) const override {
    nb201::Ops ops{};
    std::copy(d, d + nb201::kEdges, ops.begin());
    *out = static_cast<Code>(nb201::encode(ops));
    return true;
  }
  void to_decisions(Code c, uint8_t* d) const override {
    const nb201::Ops ops = nb201::decode(static_cast<int32_t>(c));
    std::copy(ops.begin(), ops.end(), d);
  }

 private:
  std::vector<int> decisions_;
};

}  // namespace

SpacePtr make_nb201() { return std::make_shared<NB201Space>(); }

}  // namespace zc::space
