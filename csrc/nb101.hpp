// NAS-Bench-101 cells for the search driver's hot path (torch-free C++17). Definitions:
// docs/nb101.md; the pure-Python references are in zcfast/spaces/nb101.py.
//
// A cell has n <= 7 vertices in topological order: 0 is the input, n-1 the output, and each
// interior vertex carries one op (ids in the official `available_ops` order: 0 conv3x3-bn-relu,
// 1 conv1x1-bn-relu, 2 maxpool3x3). Edge i -> j (i < j) is bit slot(i, j) = i + j(j-1)/2 of a
// 21-bit mask (the official gen_is_edge_fn order). Valid = after the official pruning (keep the
// vertices on some input -> output path) the input reaches the output and at most 9 edges remain.
//
// Raw code (uint64) of a valid *pruned* cell: n | edges << 3 | op_v << (24 + 2 (v - 1)) for the
// interior vertices v = 1..n-2; all other bits zero. 0 is never a valid code (it marks an
// invalid cell). Isomorphic cells can have different codes; the official hash decides identity.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "checksum.hpp"
#include "rng.hpp"

namespace zc::nb101 {

constexpr int kMaxVertices = 7;
constexpr int kMaxEdges = 9;
constexpr int kSlots = 21;    // upper-triangular entries of 7 x 7
constexpr int kInterior = 5;  // interior vertices of the 7-vertex form
constexpr int kOps = 3;
constexpr int kMoves = kSlots + kInterior * (kOps - 1);  // 21 edge flips + 10 op changes = 31
constexpr int kFeatures = kSlots + kInterior * kOps;     // 36
constexpr int64_t kNumCells = 423624;                    // distinct hashes in the official data
extern const char* const kOpNames[kOps];

using Code = uint64_t;

constexpr int slot(int i, int j) { return i + j * (j - 1) / 2; }

// A cell as given (not necessarily pruned or valid): n vertices (2..7), edge bits over slot(i, j)
// with j < n, interior op ids ops[1..n-2] (ops[0] and ops[n-1] are the input and output).
struct Cell {
  int n = 0;
  uint32_t edges = 0;
  std::array<uint8_t, kMaxVertices> ops{};
  bool edge(int i, int j) const { return (edges >> slot(i, j)) & 1U; }
};

// Raw code of the pruned form of a cell, or 0 when it is invalid (input not connected to the
// output, or more than 9 edges after pruning). Throws std::invalid_argument on malformed input
// (n outside [2, 7], edge bits beyond n vertices, op id > 2).
Code prune(const Cell& cell);
bool valid_code(Code code);  // the raw code of a valid pruned cell
void check_code(Code code);  // std::invalid_argument naming the code otherwise
Cell decode(Code code);      // checked

// The official module hash (nasbench graph_util.hash_module on the pruned cell), as the MD5
// digest whose hex form keys the benchmark's data; key = its first 8 bytes, big-endian.
Md5Digest hash(Code code);
std::string hash_hex(Code code);
uint64_t key(Code code);
inline uint64_t key_of(const Md5Digest& d) {
  uint64_t k = 0;
  for (int i = 0; i < 8; ++i) k = (k << 8) | d[i];
  return k;
}

// The 7-vertex form of a valid cell: vertices 0..n-2 kept, output moved to 6, vertices
// n-1..5 unused (no edges, op 0). `live` = n - 2 interior vertices in use.
struct Form7 {
  uint32_t edges = 0;
  std::array<uint8_t, kInterior> ops{};
  int live = 0;
};
Form7 embed7(Code code);
// Raw code of the 7-vertex cell (edges over the 21 slots, 5 interior op ids), 0 if invalid.
Code from7(uint32_t edges, const uint8_t* ops5);

// Move m of the 7-vertex form: m < 21 flips edge slot m; m = 21 + 2 (v - 1) + r gives interior
// vertex v the r-th of its two other ops. Returns the resulting code or 0 (invalid).
Code apply_move(Code code, int move);

// Official random_spec: 21 fair edge bits (top bits of one draw), 5 uniform ops, until valid.
Code sample(Rng& rng);
// n codes of distinct networks (distinct 64-bit keys), first occurrence of each in sample order.
std::vector<Code> sample_distinct(int64_t n, Rng& rng);
// A uniformly drawn move, redrawn until the cell is valid and a different network (hash). The
// 2-vertex cell has no such move and gets sample(rng) instead.
Code mutate(Code code, Rng& rng);
// Every valid one-move cell that is a different network, once per hash, in move order.
std::vector<Code> neighbours(Code code);

// Predictor input (kFeatures floats): 21 edge bits of the 7-vertex form, then one-hot op rows of
// 3 for interior vertices 1..5 (zero rows for unused vertices).
void features(Code code, float* out);

// REINFORCE decisions: one op per interior vertex of the 7-vertex form and one Bernoulli per
// edge slot. from_decisions returns 0 when the decided cell is invalid.
inline Code from_decisions(const uint8_t ops5[kInterior], uint32_t edges) {
  return from7(edges, ops5);
}
inline void to_decisions(Code code, uint8_t ops5[kInterior], uint32_t& edges) {
  const Form7 f = embed7(code);
  for (int k = 0; k < kInterior; ++k) ops5[k] = f.ops[k];
  edges = f.edges;
}

}  // namespace zc::nb101
