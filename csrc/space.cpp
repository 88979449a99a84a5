// Defaults shared by every space (space.hpp).
#include "space.hpp"

#include <stdexcept>
#include <string>
#include <unordered_set>

namespace zc::space {

std::vector<Code> Space::sample_distinct(int64_t n, Rng& rng) const {
  const uint64_t cap = size();
  if (n < 0 || (cap > 0 && static_cast<uint64_t>(n) > cap))
    throw std::invalid_argument("cannot draw " + std::to_string(n) +
                                " distinct architectures from " + name() + " (" +
                                std::to_string(cap) + " in the space)");
  std::vector<Code> out;
  std::unordered_set<Key> seen;
  out.reserve(static_cast<size_t>(n));
  seen.reserve(static_cast<size_t>(n) * 2);
  while (static_cast<int64_t>(out.size()) < n) {
    const Code c = sample(rng);
    if (!seen.insert(key(c)).second) continue;
    out.push_back(c);
  }
  return out;
}

}  // namespace zc::space
