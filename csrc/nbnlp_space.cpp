// NAS-Bench-NLP behind the search driver's space interface (space.hpp); the cells are in
// nbnlp.hpp and docs/nbnlp.md.
//
// code = a handle of a canonical cell (its 64-bit key, or a tagged handle of a logged run); key =
// the first 8 bytes of MD5(canonical JSON), so isomorphic cells are one network. The space has
// no complete ground truth: searches run on the pool of logged networks (docs/spaces.md), which
// uses key, check, encode and to_decisions. Sampling follows the benchmark's generator, a
// mutation and the neighbours change one activation or elementwise op, or reroute one input
// (docs/nbnlp.md); the predictor reads op, edge-type and hidden-state counts (101 features); the
// policy decides op, role and three inputs per node slot (25 slots).
#include <string>

#include "nbnlp.hpp"
#include "space.hpp"

namespace zc::space {

namespace {

class NBNLPSpace final : public Space {
 public:
  NBNLPSpace() {
    for (int j = 0; j < nbnlp::kMaxNodes; ++j) {
      decisions_.push_back(nbnlp::kOps + 1);        // op, or no node
      decisions_.push_back(nbnlp::kMaxHidden + 1);  // role: none or h_new_i
      for (int p = 0; p < nbnlp::kMaxInputs; ++p) decisions_.push_back(nbnlp::kNoInput + 1);
    }
  }

  std::string name() const override { return "nbnlp"; }
  uint64_t size() const override { return 0; }  // unknown

  void check(Code c) const override { nbnlp::check_code(c); }
  Key key(Code c) const override { return nbnlp::key(c); }
  std::string describe(Code c) const override {
    const nbnlp::Cell& cell = nbnlp::lookup(c);
    std::string s = "NB-NLP cell " + nbnlp::hash_hex(c) + " (" + std::to_string(cell.hidden) +
                    " hidden, " + std::to_string(cell.n()) + " nodes";
    if (const uint64_t t = nbnlp::tag_of(c)) s += ", recepie_id " + std::to_string(t);
    return s + ")";
  }

  Code sample(Rng& rng) const override { return nbnlp::sample(rng); }
  std::vector<Code> sample_distinct(int64_t n, Rng& rng) const override {
    return nbnlp::sample_distinct(n, rng);
  }
  Code mutate(Code c, Rng& rng) const override { return nbnlp::mutate(c, rng); }
  void neighbours(Code c, std::vector<Code>& out) const override { out = nbnlp::neighbours(c); }
  // The median neighbourhood of the logged networks (docs/nbnlp.md): the largest (about 2,000
  // moves for a 25-node cell) would make every member of the 263-network pool a neighbour.
  int neighbourhood_size() const override { return nbnlp::kPoolNeighbours; }

  int features() const override { return nbnlp::kFeatures; }
  double active_features() const override { return nbnlp::kActiveFeatures; }
  void encode(Code c, float* out) const override { nbnlp::features(c, out); }

  const std::vector<int>& decision_sizes() const override { return decisions_; }
  bool from_decisions(const uint8_t* d, Code* out) const override {
    const Code c = nbnlp::from_decisions(d);
    if (c == 0) return false;
    *out = c;
    return true;
  }
  void to_decisions(Code c, uint8_t* d) const override { nbnlp::to_decisions(c, d); }

 private:
  std::vector<int> decisions_;
};

}  // namespace

SpacePtr make_nbnlp() { return std::make_shared<NBNLPSpace>(); }

}  // namespace zc::space
