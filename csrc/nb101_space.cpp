// NAS-Bench-101 behind the search driver's space interface (space.hpp); the cell encodings are in
// nb101.hpp and docs/nb101.md.
//
// code = the raw code of a pruned cell; key = the first 8 bytes of the official graph hash, so
// isomorphic cells are one network. Sampling is the official random_spec rule (not uniform over
// networks: a network with many isomorphic matrices is drawn more often, as in NAS-Bench-101's
// own random search); a mutation and the neighbours flip one edge or change one interior op of
// the 7-vertex form (31 moves, valid results of a different network only); the predictor reads
// 21 edge bits and one-hot ops of the 5 interior vertices; the policy decides an op per interior
// vertex and a Bernoulli per edge, like NAS-Bench-101's REINFORCE baseline.
#include <algorithm>
#include <string>

#include "nb101.hpp"
#include "space.hpp"

namespace zc::space {

namespace {

class NB101Space final : public Space {
 public:
  NB101Space() {
    decisions_.assign(nb101::kInterior, nb101::kOps);
    decisions_.insert(decisions_.end(), nb101::kSlots, 2);
  }

  std::string name() const override { return "nb101"; }
  uint64_t size() const override { return static_cast<uint64_t>(nb101::kNumCells); }

  void check(Code c) const override { nb101::check_code(c); }
  Key key(Code c) const override { return nb101::key(c); }
  std::string describe(Code c) const override {
    nb101::check_code(c);
    const nb101::Cell cell = nb101::decode(c);
    std::string s = "NB101 cell " + nb101::hash_hex(c) + " (" + std::to_string(cell.n) +
                    " vertices, ops";
    for (int v = 1; v < cell.n - 1; ++v) s += std::string(" ") + nb101::kOpNames[cell.ops[v]];
    return s + ")";
  }

  Code sample(Rng& rng) const override { return nb101::sample(rng); }
  std::vector<Code> sample_distinct(int64_t n, Rng& rng) const override {
    return nb101::sample_distinct(n, rng);
  }
  Code mutate(Code c, Rng& rng) const override {
    // the 2-vertex cell has no single move to another network: nb101::mutate then draws a random
    // cell, which is redrawn here until it is another network (the interface's contract)
    Code m = nb101::mutate(c, rng);
    while (nb101::key(m) == nb101::key(c)) m = nb101::sample(rng);
    return m;
  }
  void neighbours(Code c, std::vector<Code>& out) const override { out = nb101::neighbours(c); }
  int neighbourhood_size() const override { return nb101::kMoves; }

  int features() const override { return nb101::kFeatures; }
  // about 7 edges and 5 interior op rows are set in a typical valid cell
  double active_features() const override { return 12.0; }
  void encode(Code c, float* out) const override { nb101::features(c, out); }

  const std::vector<int>& decision_sizes() const override { return decisions_; }
  bool from_decisions(const uint8_t* d, Code* out) const override {
    uint32_t edges = 0;
    for (int s = 0; s < nb101::kSlots; ++s)
      if (d[nb101::kInterior + s]) edges |= 1U << s;
    const Code c = nb101::from_decisions(d, edges);
    if (c == 0) return false;
    *out = c;
    return true;
  }
  void to_decisions(Code c, uint8_t* d) const override {
    uint32_t edges = 0;
    nb101::to_decisions(c, d, edges);
    for (int s = 0; s < nb101::kSlots; ++s) d[nb101::kInterior + s] = (edges >> s) & 1U;
  }

 private:
  std::vector<int> decisions_;
};

}  // namespace

SpacePtr make_nb101() { return std::make_shared<NB101Space>(); }

}  // namespace zc::space
