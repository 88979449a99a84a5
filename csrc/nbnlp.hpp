// NAS-Bench-NLP recurrent cells for the search driver's hot path (torch-free C++17). Definitions:
// docs/nbnlp.md; the pure-Python references are in zcfast/spaces/nbnlp.py.
//
// A cell reads x and its hidden states h_prev_0..h_prev_{T-1} (T = 1..3) and computes op nodes
// (ids: 0 linear, 1 blend, 2 elementwise_sum, 3 elementwise_prod, 4 activation_tanh,
// 5 activation_sigm, 6 activation_leaky_relu). Sources are numbered 0 = x, 1 + i = h_prev_i,
// 4 + j = node j; outputs[i] is the node that gives h_new_i (h_new_0 is also the output).
//
// Identity: cells are the same network when their graphs are isomorphic (the inputs of every op
// but blend unordered, the hidden slots 1..T-1 permutable together). The canonical form relabels
// the graph by a canonical labelling (individualisation-refinement, smallest certificate); the
// key is MD5(canonical JSON), the 64-bit key its first 8 bytes.
//
// Codes: a cell does not fit in 64 bits, so a code is a handle into a process-wide table of
// canonical cells (thread-safe). The code of a network is its 64-bit key; a code may also carry
// a tag (a logged recepie_id): then it names the same network under another handle, with the
// same key. 0 is never a code.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "checksum.hpp"
#include "rng.hpp"

namespace zc::nbnlp {

constexpr int kOps = 7;
constexpr int kLinear = 0, kBlend = 1, kSum = 2, kProd = 3, kTanh = 4, kSigm = 5, kLeaky = 6;
constexpr int kMaxHidden = 3;
constexpr int kMaxNodes = 25;
constexpr int kMaxInputs = 3;
constexpr int kNode0 = 1 + kMaxHidden;              // source id of node 0
constexpr int kNoInput = kNode0 + kMaxNodes;        // decision value: no input (29)
constexpr int kAbsent = kOps;                       // decision value: no node in the slot
constexpr int kPerSlot = 2 + kMaxInputs;            // op, role, three inputs
constexpr int kDecisions = kMaxNodes * kPerSlot;    // 125
constexpr int kFeatures = kOps + 10 * kOps + kMaxHidden + kMaxHidden * kOps;  // 101
constexpr int kMaxLeaves = 100000;
// pool neighbourhood size and typical non-zero features (measured on the logged networks,
// docs/nbnlp.md)
constexpr int kPoolNeighbours = 23;
constexpr double kActiveFeatures = 13.7;
extern const char* const kOpNames[kOps];

using Code = uint64_t;

struct Node {
  uint8_t op = 0;
  uint8_t n_in = 0;
  std::array<uint8_t, kMaxInputs> in{};
};

struct Cell {
  int hidden = 1;
  std::vector<Node> nodes;
  std::array<int, kMaxHidden> out{};
  int n() const { return static_cast<int>(nodes.size()); }
};

// Why the cell is not a network of the space ("" when it is valid).
std::string invalid_reason(const Cell& c);
// The canonical form of a valid cell (std::invalid_argument naming the problem otherwise).
Cell canonical(const Cell& c);
// The cell without nodes that feed no new hidden state (node order kept).
Cell prune(const Cell& c);
// JSON recepie of a cell (names node_j / h_new_i, json.dumps layout); of the canonical form, it is
// the string the key hashes.
std::string to_json(const Cell& c);
Md5Digest hash(const Cell& canonical_cell);

// ---- the code table ---------------------------------------------------------------------------
// Canonicalises, registers and returns the code of a valid cell (tag 0: the network's own code;
// tag t > 0: a tagged handle of it). Throws std::invalid_argument if invalid, std::runtime_error
// on a 64-bit collision.
Code intern(const Cell& c, uint64_t tag = 0);
bool known(Code code);
void check_code(Code code);          // std::invalid_argument naming an unknown code
const Cell& lookup(Code code);       // the canonical cell (checked)
uint64_t tag_of(Code code);          // 0 for untagged codes
uint64_t key(Code code);             // the 64-bit key (the untagged code)
std::string hash_hex(Code code);     // the key as 32 hex digits
size_t table_size();

// ---- sampling and moves -------------------------------------------------------------------------
// One draw of the benchmark's generator (hidden states, intermediate vertices); ok = passes the
// generator's sanity check. The cell is pruned, in creation order.
Cell generate(Rng& rng, int hidden, int intermediate, bool* ok);
Code sample(Rng& rng);
std::vector<Code> sample_distinct(int64_t n, Rng& rng);
// Every move of a canonical cell in the fixed order of docs/nbnlp.md: the resulting code, or 0
// when the moved cell is invalid.
std::vector<Code> moves(Code code);
std::vector<Code> neighbours(Code code);
Code mutate(Code code, Rng& rng);

void features(Code code, float* out);
void to_decisions(Code code, uint8_t* d);
// 0 when the decisions describe no valid cell.
Code from_decisions(const uint8_t* d);

}  // namespace zc::nbnlp

namespace zc::space {
class Space;
// The NAS-Bench-NLP space of the search driver (nbnlp_space.cpp), bound as zcfast._C.space.nbnlp().
std::shared_ptr<const Space> make_nbnlp();
}  // namespace zc::space
