// The search driver's view of a search space (torch-free C++17): what its hot path needs and
// nothing else. One implementation per space (nb201_space.cpp, ...); docs/spaces.md explains the
// interface and where a new space plugs in.
//
// Two integers name an architecture:
// - its *code* (uint64): a raw encoding that decodes back to the architecture (the Python side
//   builds networks from it). Several codes may describe the same network (NB101: isomorphic or
//   unpruned matrices).
// - its *key* (uint64): the identity under which the space counts networks as equal (a hash under
//   isomorphism, or the cell itself when the benchmark trained every cell). Scores, trained sets
//   and ground truth are keyed by it.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rng.hpp"

namespace zc::space {

using Code = uint64_t;
using Key = uint64_t;

class Space {
 public:
  virtual ~Space() = default;

  virtual std::string name() const = 0;
  // Number of distinct keys (networks) in the space; 0 when unknown.
  virtual uint64_t size() const = 0;
  // True when keys are the integers [0, size()): lets tables use arrays instead of hash maps.
  virtual bool dense_keys() const { return false; }

  // Throws std::invalid_argument naming the code when it does not decode to a valid arch.
  virtual void check(Code c) const = 0;
  virtual Key key(Code c) const = 0;
  virtual std::string describe(Code c) const = 0;  // human-readable, for messages

  // A random valid architecture (the space's own sampling rule).
  virtual Code sample(Rng& rng) const = 0;
  // n architectures with distinct keys. Default: rejection on keys with sample().
  virtual std::vector<Code> sample_distinct(int64_t n, Rng& rng) const;
  // One random mutation (a valid architecture with a different key).
  virtual Code mutate(Code c, Rng& rng) const = 0;
  // The one-step neighbours, distinct keys, in a fixed order (the space documents it).
  virtual void neighbours(Code c, std::vector<Code>& out) const = 0;
  // Size of a neighbourhood (the largest one, for spaces where it varies).
  virtual int neighbourhood_size() const = 0;

  // Predictor encoding: features() floats per architecture, most of them zero.
  virtual int features() const = 0;
  // Typical number of non-zero features (the fan-in of the predictor's first layer).
  virtual double active_features() const = 0;
  virtual void encode(Code c, float* out) const = 0;

  // REINFORCE policy: a factorised categorical distribution, one decision per entry of
  // decision_sizes() (the number of categories of that decision).
  virtual const std::vector<int>& decision_sizes() const = 0;
  // Decisions -> architecture; false when they describe no valid one (the policy resamples).
  virtual bool from_decisions(const uint8_t* d, Code* out) const = 0;
  // Architecture -> one decision vector that gives it.
  virtual void to_decisions(Code c, uint8_t* d) const = 0;
};

using SpacePtr = std::shared_ptr<const Space>;

// The NAS-Bench-201 space (nb201_space.cpp).
SpacePtr make_nb201();
// The NAS-Bench-101 space (nb101_space.cpp).
SpacePtr make_nb101();

}  // namespace zc::space
