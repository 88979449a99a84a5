#include "nb101.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <unordered_set>

namespace zc::nb101 {

const char* const kOpNames[kOps] = {"conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"};

namespace {

constexpr int kEdgeShift = 3;
constexpr int kOpShift = 24;
constexpr uint32_t kSlotMask = (1U << kSlots) - 1;

// Packs a cell that is already pruned and valid.
Code pack(const Cell& c) {
  Code code = static_cast<Code>(c.n) | static_cast<Code>(c.edges) << kEdgeShift;
  for (int v = 1; v < c.n - 1; ++v) code |= static_cast<Code>(c.ops[v]) << (kOpShift + 2 * (v - 1));
  return code;
}

// Unpacks without checking.
Cell unpack(Code code) {
  Cell c;
  c.n = static_cast<int>(code & 7);
  c.edges = static_cast<uint32_t>(code >> kEdgeShift) & kSlotMask;
  for (int v = 1; v < c.n - 1 && v <= kInterior; ++v)
    c.ops[v] = static_cast<uint8_t>((code >> (kOpShift + 2 * (v - 1))) & 3);
  return c;
}

std::string code_str(Code code) { return std::to_string(code); }

}  // namespace

Code prune(const Cell& c) {
  const int n = c.n;
  if (n < 2 || n > kMaxVertices)
    throw std::invalid_argument("an NB101 cell has 2 to 7 vertices, got " + std::to_string(n));
  if (c.edges >> slot(0, n))
    throw std::invalid_argument("edge bits beyond a " + std::to_string(n) + "-vertex cell");
  for (int v = 1; v < n - 1; ++v)
    if (c.ops[v] >= kOps)
      throw std::invalid_argument("op id " + std::to_string(c.ops[v]) + " of vertex " +
                                  std::to_string(v) + " is out of range [0, 2]");
  // Vertices are in topological order: one sweep each way finds what the input reaches and
  // what reaches the output.
  uint32_t fwd = 1U;
  for (int u = 0; u < n; ++u)
    if (fwd >> u & 1U)
      for (int v = u + 1; v < n; ++v)
        if (c.edge(u, v)) fwd |= 1U << v;
  uint32_t bwd = 1U << (n - 1);
  for (int u = n - 2; u >= 0; --u)
    for (int v = u + 1; v < n; ++v)
      if (c.edge(u, v) && (bwd >> v & 1U)) {
        bwd |= 1U << u;
        break;
      }
  const uint32_t keep = fwd & bwd;
  if (!(keep & 1U) || !(keep >> (n - 1) & 1U)) return 0;  // input does not reach output
  int idx[kMaxVertices];
  Cell p;
  for (int v = 0; v < n; ++v)
    if (keep >> v & 1U) {
      idx[v] = p.n;
      p.ops[p.n] = c.ops[v];
      ++p.n;
    }
  int num_edges = 0;
  for (int j = 1; j < n; ++j)
    for (int i = 0; i < j; ++i)
      if ((keep >> i & 1U) && (keep >> j & 1U) && c.edge(i, j)) {
        p.edges |= 1U << slot(idx[i], idx[j]);
        ++num_edges;
      }
  if (num_edges > kMaxEdges) return 0;
  p.ops[0] = 0;
  p.ops[p.n - 1] = 0;
  return pack(p);
}

bool valid_code(Code code) {
  if (code >> (kOpShift + 2 * kInterior)) return false;
  const Cell c = unpack(code);
  if (c.n < 2 || c.n > kMaxVertices) return false;
  if (c.edges >> slot(0, c.n)) return false;
  // op bits of vertices the cell does not have must be zero, the others < 3
  for (int k = 0; k < kInterior; ++k) {
    const int o = static_cast<int>((code >> (kOpShift + 2 * k)) & 3);
    if (o >= kOps || (k >= c.n - 2 && o != 0)) return false;
  }
  return prune(c) == code;  // pruned already, connected, at most 9 edges
}

void check_code(Code code) {
  if (!valid_code(code))
    throw std::invalid_argument(code_str(code) + " is not the raw code of a valid NB101 cell");
}

Cell decode(Code code) {
  check_code(code);
  return unpack(code);
}

namespace {

// Hash of an already-checked cell (see hash_module in zcfast/spaces/nb101.py for the rule).
Md5Digest hash_cell(const Cell& c) {
  const int n = c.n;
  char h[kMaxVertices][32], nh[kMaxVertices][32];
  int in[kMaxVertices] = {0}, out[kMaxVertices] = {0};
  for (int j = 1; j < n; ++j)
    for (int i = 0; i < j; ++i)
      if (c.edge(i, j)) {
        ++out[i];
        ++in[j];
      }
  std::string s;
  s.reserve(kMaxVertices * 32 + 40);
  for (int v = 0; v < n; ++v) {
    const int label = v == 0 ? -1 : (v == n - 1 ? -2 : c.ops[v]);
    // Python's str((out, in, label))
    s = "(" + std::to_string(out[v]) + ", " + std::to_string(in[v]) + ", " +
        std::to_string(label) + ")";
    md5_hex(s.data(), s.size(), h[v]);
  }
  auto less = [&](int a, int b) { return std::memcmp(h[a], h[b], 32) < 0; };
  int nb[kMaxVertices];
  for (int it = 0; it < n; ++it) {
    for (int v = 0; v < n; ++v) {
      s.clear();
      int k = 0;
      for (int w = 0; w < v; ++w)
        if (c.edge(w, v)) nb[k++] = w;
      std::sort(nb, nb + k, less);
      for (int q = 0; q < k; ++q) s.append(h[nb[q]], 32);
      s.push_back('|');
      k = 0;
      for (int w = v + 1; w < n; ++w)
        if (c.edge(v, w)) nb[k++] = w;
      std::sort(nb, nb + k, less);
      for (int q = 0; q < k; ++q) s.append(h[nb[q]], 32);
      s.push_back('|');
      s.append(h[v], 32);
      md5_hex(s.data(), s.size(), nh[v]);
    }
    std::memcpy(h, nh, sizeof(h));
  }
  // Python's str(sorted(hashes)): ['a', 'b', ...]
  int order[kMaxVertices];
  for (int v = 0; v < n; ++v) order[v] = v;
  std::sort(order, order + n, less);
  s = "[";
  for (int q = 0; q < n; ++q) {
    if (q) s += ", ";
    s.push_back('\'');
    s.append(h[order[q]], 32);
    s.push_back('\'');
  }
  s.push_back(']');
  return md5(s.data(), s.size());
}

}  // namespace

Md5Digest hash(Code code) { return hash_cell(decode(code)); }
std::string hash_hex(Code code) { return hex(hash(code)); }
uint64_t key(Code code) { return key_of(hash(code)); }

Form7 embed7(Code code) {
  const Cell c = decode(code);
  Form7 f;
  f.live = c.n - 2;
  for (int j = 1; j < c.n; ++j)
    for (int i = 0; i < j; ++i)
      if (c.edge(i, j)) f.edges |= 1U << slot(i, j == c.n - 1 ? kMaxVertices - 1 : j);
  for (int v = 1; v < c.n - 1; ++v) f.ops[v - 1] = c.ops[v];
  return f;
}

Code from7(uint32_t edges, const uint8_t* ops5) {
  if (edges & ~kSlotMask) throw std::invalid_argument("edge bits beyond the 21 slots");
  Cell c;
  c.n = kMaxVertices;
  c.edges = edges;
  for (int k = 0; k < kInterior; ++k) c.ops[k + 1] = ops5[k];
  return prune(c);
}

Code apply_move(Code code, int move) {
  if (move < 0 || move >= kMoves)
    throw std::invalid_argument("an NB101 move is in [0, 31), got " + std::to_string(move));
  Form7 f = embed7(code);
  if (move < kSlots) {
    f.edges ^= 1U << move;
  } else {
    const int v = (move - kSlots) / 2, r = (move - kSlots) % 2;
    // the r-th op (in id order) different from the current one
    int o = 0, seen = -1;
    for (; o < kOps; ++o)
      if (o != f.ops[v] && ++seen == r) break;
    f.ops[v] = static_cast<uint8_t>(o);
  }
  return from7(f.edges, f.ops.data());
}

Code sample(Rng& rng) {
  for (;;) {
    const auto edges = static_cast<uint32_t>(rng.next() >> (64 - kSlots));
    uint8_t ops[kInterior];
    for (auto& o : ops) o = static_cast<uint8_t>(rng.below(kOps));
    const Code c = from7(edges, ops);
    if (c) return c;
  }
}

std::vector<Code> sample_distinct(int64_t n, Rng& rng) {
  if (n < 0 || n > kNumCells)
    throw std::invalid_argument("can sample between 0 and 423624 distinct NB101 cells, got " +
                                std::to_string(n));
  std::vector<Code> out;
  out.reserve(static_cast<size_t>(n));
  std::unordered_set<uint64_t> seen;
  while (static_cast<int64_t>(out.size()) < n) {
    const Code c = sample(rng);
    if (seen.insert(key(c)).second) out.push_back(c);
  }
  return out;
}

Code mutate(Code code, Rng& rng) {
  const Cell c = decode(code);
  if (c.n == 2) return sample(rng);
  const Md5Digest own = hash_cell(c);
  for (;;) {
    const Code m = apply_move(code, static_cast<int>(rng.below(kMoves)));
    if (m && hash_cell(unpack(m)) != own) return m;
  }
}

std::vector<Code> neighbours(Code code) {
  std::vector<Md5Digest> seen{hash(code)};
  std::vector<Code> out;
  for (int mv = 0; mv < kMoves; ++mv) {
    const Code m = apply_move(code, mv);
    if (!m) continue;
    const Md5Digest h = hash_cell(unpack(m));
    if (std::find(seen.begin(), seen.end(), h) == seen.end()) {
      seen.push_back(h);
      out.push_back(m);
    }
  }
  return out;
}

void features(Code code, float* out) {
  const Form7 f = embed7(code);
  for (int k = 0; k < kFeatures; ++k) out[k] = 0.0f;
  for (int k = 0; k < kSlots; ++k) out[k] = static_cast<float>((f.edges >> k) & 1U);
  for (int v = 0; v < f.live; ++v) out[kSlots + kOps * v + f.ops[v]] = 1.0f;
}

}  // namespace zc::nb101
