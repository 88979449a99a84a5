// NAS-Bench-201 cell encodings (torch-free; used by the Python API and the search driver).
//
// A cell has 6 edges in the benchmark's string order (0->1), (0->2), (1->2), (0->3), (1->3), (2->3),
// each carrying one of 5 ops. The *code* of a cell is sum_e op[e] * 5^e (0..15,624); it is NOT the
// benchmark's index (that order comes from the benchmark's table and is mapped in Python).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "rng.hpp"

namespace zc::nb201 {

constexpr int kEdges = 6;
constexpr int kOps = 5;
constexpr int32_t kSpaceSize = 15625;  // 5^6
constexpr int kNeighbours = kEdges * (kOps - 1);  // 24

// Op ids follow NAS-Bench-201's own list.
enum Op : uint8_t { kNone = 0, kSkip = 1, kConv1x1 = 2, kConv3x3 = 3, kAvgPool = 4 };
extern const char* const kOpNames[kOps];
constexpr int kEdgeSrc[kEdges] = {0, 0, 1, 0, 1, 2};
constexpr int kEdgeDst[kEdges] = {1, 2, 2, 3, 3, 3};

using Ops = std::array<uint8_t, kEdges>;

int op_from_name(const std::string& name);  // throws std::invalid_argument naming the op
bool valid_code(int64_t code);
void check_code(int64_t code);               // throws std::invalid_argument naming the code
int32_t encode(const Ops& ops);
Ops decode(int32_t code);
Ops parse(const std::string& arch);          // throws std::invalid_argument naming the bad part
std::string to_string(const Ops& ops);

// Uniformly random cell.
int32_t sample(Rng& rng);
// n distinct cells, uniformly without replacement (partial Fisher-Yates), n <= 15,625.
std::vector<int32_t> sample_distinct(int64_t n, Rng& rng);
// Change one uniformly chosen edge to a uniformly chosen *different* op.
int32_t mutate(int32_t code, Rng& rng);
// The 24 one-edge neighbours, edge-major then op order (ops equal to the current one skipped).
std::array<int32_t, kNeighbours> neighbours(int32_t code);
// NAS-Bench-201's canonical string under cell isomorphism (its `to_unique_str(consider_zero=True)`
// rule: skip_connect is the identity, none or a zero input gives '#', each node is the sorted
// '+'-join of its inputs). It splits the 15,625 cells into 6,466 classes.
std::string canonical(const Ops& ops);

}  // namespace zc::nb201
