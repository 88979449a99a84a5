#include "nb201.hpp"

#include <algorithm>
#include <stdexcept>

namespace zc::nb201 {

const char* const kOpNames[kOps] = {"none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3",
                                    "avg_pool_3x3"};

int op_from_name(const std::string& name) {
  for (int o = 0; o < kOps; ++o)
    if (name == kOpNames[o]) return o;
  throw std::invalid_argument("unknown NB201 op '" + name +
                              "' (expected one of none, skip_connect, nor_conv_1x1, "
                              "nor_conv_3x3, avg_pool_3x3)");
}

bool valid_code(int64_t code) { return code >= 0 && code < kSpaceSize; }

void check_code(int64_t code) {
  if (!valid_code(code))
    throw std::invalid_argument("NB201 cell code " + std::to_string(code) +
                                " is out of range [0, 15624]");
}

int32_t encode(const Ops& ops) {
  int32_t code = 0, mul = 1;
  for (int e = 0; e < kEdges; ++e) {
    if (ops[e] >= kOps)
      throw std::invalid_argument("op id " + std::to_string(ops[e]) + " on edge " +
                                  std::to_string(e) + " is out of range [0, 4]");
    code += ops[e] * mul;
    mul *= kOps;
  }
  return code;
}

Ops decode(int32_t code) {
  check_code(code);
  Ops ops{};
  for (int e = 0; e < kEdges; ++e) {
    ops[e] = static_cast<uint8_t>(code % kOps);
    code /= kOps;
  }
  return ops;
}

namespace {
std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  out.push_back(cur);
  return out;
}
}  // namespace

Ops parse(const std::string& arch) {
  const std::string where = "in NB201 arch string '" + arch + "'";
  const auto groups = split(arch, '+');
  if (groups.size() != 3)
    throw std::invalid_argument("expected 3 node groups separated by '+', got " +
                                std::to_string(groups.size()) + " " + where);
  Ops ops{};
  int edge = 0;
  for (int j = 0; j < 3; ++j) {
    const std::string& g = groups[j];
    if (g.size() < 2 || g.front() != '|' || g.back() != '|')
      throw std::invalid_argument("node group '" + g + "' must start and end with '|' " + where);
    const auto items = split(g.substr(1, g.size() - 2), '|');
    if (static_cast<int>(items.size()) != j + 1)
      throw std::invalid_argument("node group '" + g + "' has " + std::to_string(items.size()) +
                                  " edges, expected " + std::to_string(j + 1) + " " + where);
    for (int i = 0; i <= j; ++i) {
      const std::string& it = items[i];
      const auto tilde = it.find('~');
      if (tilde == std::string::npos)
        throw std::invalid_argument("edge '" + it + "' is not of the form op~input " + where);
      const std::string op = it.substr(0, tilde), src = it.substr(tilde + 1);
      if (src != std::to_string(i))
        throw std::invalid_argument("edge '" + it + "' should read from node " +
                                    std::to_string(i) + " " + where);
      int o;
      try {
        o = op_from_name(op);
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(std::string(e.what()) + " " + where);
      }
      ops[edge++] = static_cast<uint8_t>(o);
    }
  }
  return ops;
}

std::string to_string(const Ops& ops) {
  std::string s;
  int e = 0;
  for (int j = 0; j < 3; ++j) {
    if (j) s += '+';
    s += '|';
    for (int i = 0; i <= j; ++i) {
      s += kOpNames[ops[e++]];
      s += '~';
      s += std::to_string(i);
      s += '|';
    }
  }
  return s;
}

int32_t sample(Rng& rng) { return static_cast<int32_t>(rng.below(kSpaceSize)); }

std::vector<int32_t> sample_distinct(int64_t n, Rng& rng) {
  if (n < 0 || n > kSpaceSize)
    throw std::invalid_argument("cannot draw " + std::to_string(n) +
                                " distinct NB201 cells: the space has 15,625");
  std::vector<int32_t> perm(kSpaceSize);
  for (int32_t i = 0; i < kSpaceSize; ++i) perm[i] = i;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t j = i + static_cast<int64_t>(rng.below(static_cast<uint64_t>(kSpaceSize - i)));
    std::swap(perm[i], perm[j]);
  }
  perm.resize(n);
  return perm;
}

int32_t mutate(int32_t code, Rng& rng) {
  Ops ops = decode(code);
  const int e = static_cast<int>(rng.below(kEdges));
  int o = static_cast<int>(rng.below(kOps - 1));
  if (o >= ops[e]) ++o;  // skip the current op: uniform over the 4 others
  ops[e] = static_cast<uint8_t>(o);
  return encode(ops);
}

std::array<int32_t, kNeighbours> neighbours(int32_t code) {
  const Ops ops = decode(code);
  std::array<int32_t, kNeighbours> out{};
  int n = 0;
  for (int e = 0; e < kEdges; ++e) {
    for (int o = 0; o < kOps; ++o) {
      if (o == ops[e]) continue;
      Ops m = ops;
      m[e] = static_cast<uint8_t>(o);
      out[n++] = encode(m);
    }
  }
  return out;
}

std::string canonical(const Ops& ops) {
  std::array<std::string, 4> node;
  node[0] = "0";
  int e = 0;
  for (int j = 1; j <= 3; ++j) {
    std::vector<std::string> terms;
    for (int i = 0; i < j; ++i, ++e) {
      const int o = ops[e];
      if (o == kNone || node[i] == "#")
        terms.emplace_back("#");
      else if (o == kSkip)
        terms.push_back(node[i]);
      else
        terms.push_back("(" + node[i] + ")@" + kOpNames[o]);
    }
    std::sort(terms.begin(), terms.end());
    std::string s;
    for (size_t t = 0; t < terms.size(); ++t) {
      if (t) s += '+';
      s += terms[t];
    }
    node[j] = s;
  }
  return node[3];
}

}  // namespace zc::nb201
