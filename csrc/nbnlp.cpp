#include "nbnlp.hpp"

#include <algorithm>
#include <deque>
#include <map>
#include <mutex>
#include <stdexcept>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace zc::nbnlp {

const char* const kOpNames[kOps] = {"linear",           "blend",           "elementwise_sum",
                                    "elementwise_prod", "activation_tanh", "activation_sigm",
                                    "activation_leaky_relu"};

namespace {

constexpr int kArityLo[kOps] = {1, 3, 2, 2, 1, 1, 1};
constexpr int kArityHi[kOps] = {3, 3, 2, 2, 1, 1, 1};
constexpr int kGenHidden[3] = {1, 2, 3};
constexpr int kGenIntermediate[3] = {7, 14, 21};

bool is_activation(int op) { return op == kTanh || op == kSigm || op == kLeaky; }

int output_index(const Cell& c, int j) {
  for (int i = 0; i < c.hidden; ++i)
    if (c.out[i] == j) return i;
  return -1;
}

std::string node_name(const Cell& c, int j) {
  const int i = output_index(c, j);
  return i >= 0 ? "h_new_" + std::to_string(i) : "node_" + std::to_string(j);
}

std::string source_name(const Cell& c, int s) {
  if (s == 0) return "x";
  if (s < kNode0) return "h_prev_" + std::to_string(s - 1);
  return node_name(c, s - kNode0);
}

// Topological order of the nodes (Kahn, FIFO), empty if there is a cycle.
std::vector<int> topo_order(const Cell& c) {
  const int n = c.n();
  std::vector<int> indeg(n, 0), order;
  std::vector<std::vector<int>> users(n);
  for (int j = 0; j < n; ++j)
    for (int p = 0; p < c.nodes[j].n_in; ++p) {
      const int s = c.nodes[j].in[p];
      if (s >= kNode0 && s - kNode0 < n) {
        ++indeg[j];
        users[s - kNode0].push_back(j);
      }
    }
  std::deque<int> ready;
  for (int j = 0; j < n; ++j)
    if (indeg[j] == 0) ready.push_back(j);
  while (!ready.empty()) {
    const int j = ready.front();
    ready.pop_front();
    order.push_back(j);
    for (int u : users[j])
      if (--indeg[u] == 0) ready.push_back(u);
  }
  if (static_cast<int>(order.size()) != n) order.clear();
  return order;
}

std::vector<char> live_nodes(const Cell& c) {
  std::vector<char> live(c.n(), 0);
  std::vector<int> stack;
  for (int i = 0; i < c.hidden; ++i)
    if (!live[c.out[i]]) {
      live[c.out[i]] = 1;
      stack.push_back(c.out[i]);
    }
  while (!stack.empty()) {
    const int j = stack.back();
    stack.pop_back();
    for (int p = 0; p < c.nodes[j].n_in; ++p) {
      const int s = c.nodes[j].in[p];
      if (s >= kNode0 && !live[s - kNode0]) {
        live[s - kNode0] = 1;
        stack.push_back(s - kNode0);
      }
    }
  }
  return live;
}

// ---- canonical labelling ------------------------------------------------------------------------
using Edge = std::pair<int, int>;  // (label, other vertex)

struct Graph {
  std::vector<std::array<int, 3>> labels;  // (depth, kind, role)
  std::vector<std::vector<Edge>> ins, outs;
};

Graph make_graph(const Cell& c) {
  const int T = c.hidden, n = c.n(), nv = 1 + T + n;
  auto vid = [&](int s) { return s < kNode0 ? s : 1 + T + (s - kNode0); };
  Graph g;
  g.labels.assign(nv, {0, 0, 0});
  g.ins.assign(nv, {});
  g.outs.assign(nv, {});
  for (int i = 0; i < T; ++i) g.labels[1 + i] = {0, i == 0 ? 1 : 2, 0};
  std::vector<int> depth(nv, 0);
  for (int j : topo_order(c)) {
    int d = 0;
    for (int p = 0; p < c.nodes[j].n_in; ++p) d = std::max(d, depth[vid(c.nodes[j].in[p])]);
    depth[1 + T + j] = d + 1;
  }
  for (int j = 0; j < n; ++j) {
    const int oi = output_index(c, j);
    const int role = oi < 0 ? 0 : (oi == 0 ? 1 : 2);
    g.labels[1 + T + j] = {depth[1 + T + j], 3 + c.nodes[j].op, role};
    for (int p = 0; p < c.nodes[j].n_in; ++p) {
      const int lab = c.nodes[j].op == kBlend ? 1 + p : 0;
      const int u = vid(c.nodes[j].in[p]);
      g.ins[1 + T + j].push_back({lab, u});
      g.outs[u].push_back({lab, 1 + T + j});
    }
  }
  for (int i = 0; i < T; ++i) {
    g.ins[1 + i].push_back({4, 1 + T + c.out[i]});
    g.outs[1 + T + c.out[i]].push_back({4, 1 + i});
  }
  return g;
}

template <class K>
std::vector<int> dense_ranks(const std::vector<K>& keys, int* count) {
  std::vector<K> sorted(keys);
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  std::vector<int> r(keys.size());
  for (size_t v = 0; v < keys.size(); ++v)
    r[v] = static_cast<int>(std::lower_bound(sorted.begin(), sorted.end(), keys[v]) - sorted.begin());
  *count = static_cast<int>(sorted.size());
  return r;
}

int n_distinct(const std::vector<int>& col) {
  std::vector<int> s(col);
  std::sort(s.begin(), s.end());
  return static_cast<int>(std::unique(s.begin(), s.end()) - s.begin());
}

std::vector<int> refine(std::vector<int> col, const Graph& g) {
  using Sig = std::tuple<int, std::vector<Edge>, std::vector<Edge>>;
  int count = n_distinct(col);
  const size_t nv = col.size();
  while (true) {
    std::vector<Sig> sig(nv);
    for (size_t v = 0; v < nv; ++v) {
      std::vector<Edge> a, b;
      for (const auto& [lab, u] : g.ins[v]) a.push_back({lab, col[u]});
      for (const auto& [lab, w] : g.outs[v]) b.push_back({lab, col[w]});
      std::sort(a.begin(), a.end());
      std::sort(b.begin(), b.end());
      sig[v] = Sig(col[v], std::move(a), std::move(b));
    }
    int c2 = 0;
    std::vector<int> nw = dense_ranks(sig, &c2);
    if (c2 == count) return nw;
    col = std::move(nw);
    count = c2;
  }
}

std::vector<int> certificate(const std::vector<int>& pi, const Graph& g) {
  const size_t nv = pi.size();
  std::vector<int> order(nv);
  for (size_t v = 0; v < nv; ++v) order[pi[v]] = static_cast<int>(v);
  std::vector<int> out;
  for (int v : order) {
    std::vector<Edge> e;
    for (const auto& [lab, u] : g.ins[v]) e.push_back({lab, pi[u]});
    std::sort(e.begin(), e.end());
    out.insert(out.end(), g.labels[v].begin(), g.labels[v].end());
    out.push_back(static_cast<int>(e.size()));
    for (const auto& [lab, r] : e) {
      out.push_back(lab);
      out.push_back(r);
    }
  }
  return out;
}

struct Search {
  const Graph& g;
  std::vector<int> best_cert, best_pi;
  int leaves = 0;

  void run(std::vector<int> col) {
    col = refine(std::move(col), g);
    const int nv = static_cast<int>(col.size());
    if (n_distinct(col) == nv) {
      if (++leaves > kMaxLeaves)
        throw std::invalid_argument("canonical labelling of this cell needs more than " +
                                    std::to_string(kMaxLeaves) + " leaves (a very symmetric cell)");
      std::vector<int> cert = certificate(col, g);
      if (best_pi.empty() || cert < best_cert) {
        best_cert = std::move(cert);
        best_pi = col;
      }
      return;
    }
    std::vector<int> size(nv, 0);
    for (int c : col) ++size[c];
    int k = 0;
    while (size[k] < 2) ++k;
    for (int v = 0; v < nv; ++v) {
      if (col[v] != k) continue;
      std::vector<int> c2(col);
      for (int u = 0; u < nv; ++u) {
        if (col[u] > k) c2[u] = col[u] + 1;
        else if (col[u] == k && u != v) c2[u] = k + 1;
      }
      run(std::move(c2));
    }
  }
};

// ---- the code table -----------------------------------------------------------------------------
struct Entry {
  const Cell* cell;
  uint64_t key;
  uint64_t tag;
};

struct Table {
  std::mutex mu;
  std::deque<Cell> cells;                      // stable addresses
  std::deque<std::string> jsons;               // canonical JSON per cell (collision check)
  std::unordered_map<Code, Entry> entries;
};

Table& table() {
  static Table t;
  return t;
}

uint64_t splitmix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::string code_str(Code c) { return std::to_string(c); }

// ---- moves --------------------------------------------------------------------------------------
std::vector<char> descendants(const Cell& c, int j) {
  const int n = c.n();
  std::vector<char> seen(n, 0);
  seen[j] = 1;
  // nodes are in topological order in a canonical cell: one forward sweep
  for (int k = 0; k < n; ++k)
    for (int p = 0; p < c.nodes[k].n_in; ++p) {
      const int s = c.nodes[k].in[p];
      if (s >= kNode0 && seen[s - kNode0]) seen[k] = 1;
    }
  return seen;
}

Code finish(const Cell& c) {
  if (!invalid_reason(c).empty()) return 0;
  return intern(c);
}

int pick(Rng& rng, std::vector<int>& pool) {
  const size_t i = static_cast<size_t>(rng.below(pool.size()));
  const int v = pool[i];
  pool.erase(pool.begin() + static_cast<std::ptrdiff_t>(i));
  return v;
}

}  // namespace

// ---- validity -----------------------------------------------------------------------------------
std::string invalid_reason(const Cell& c) {
  const int T = c.hidden, n = c.n();
  if (T < 1 || T > kMaxHidden) return std::to_string(T) + " hidden states (1 to 3)";
  if (n > kMaxNodes)
    return std::to_string(n) + " op nodes (at most 25, the generator's largest)";
  for (int i = 0; i < T; ++i) {
    if (c.out[i] < 0 || c.out[i] >= n) return "the new hidden states are not distinct nodes";
    for (int k = 0; k < i; ++k)
      if (c.out[k] == c.out[i]) return "the new hidden states are not distinct nodes";
  }
  for (int j = 0; j < n; ++j) {
    const Node& nd = c.nodes[j];
    if (nd.op >= kOps) return "node " + node_name(c, j) + " has an unknown op";
    if (nd.n_in < kArityLo[nd.op] || nd.n_in > kArityHi[nd.op]) {
      const std::string want = kArityLo[nd.op] == kArityHi[nd.op]
                                   ? std::to_string(kArityLo[nd.op])
                                   : std::to_string(kArityLo[nd.op]) + " to " +
                                         std::to_string(kArityHi[nd.op]);
      return "node " + node_name(c, j) + " (" + kOpNames[nd.op] + ") has " +
             std::to_string(nd.n_in) + " inputs (" + want + " expected)";
    }
    for (int p = 0; p < nd.n_in; ++p)
      for (int q = 0; q < p; ++q)
        if (nd.in[p] == nd.in[q]) return "node " + node_name(c, j) + " reads the same input twice";
    for (int p = 0; p < nd.n_in; ++p) {
      const int s = nd.in[p];
      if (!(s == 0 || (s >= 1 && s <= T) || (s >= kNode0 && s < kNode0 + n)))
        return "node " + node_name(c, j) + " reads an unknown source " + std::to_string(s);
      if (s == kNode0 + j) return "node " + node_name(c, j) + " reads itself";
      if (s == 0 && nd.op != kLinear)
        return "node " + node_name(c, j) + " (" + kOpNames[nd.op] +
               ") reads x: only linear nodes can (x has the layer's input size, every other "
               "value the hidden size)";
    }
  }
  if (topo_order(c).size() != static_cast<size_t>(n)) return "the cell graph has a cycle";
  const std::vector<char> live = live_nodes(c);
  for (int j = 0; j < n; ++j)
    if (!live[j]) return "node " + node_name(c, j) + " feeds no new hidden state (remove it)";
  std::vector<char> used(kNode0, 0);
  for (const Node& nd : c.nodes)
    for (int p = 0; p < nd.n_in; ++p)
      if (nd.in[p] < kNode0) used[nd.in[p]] = 1;
  for (int s = 0; s <= T; ++s)
    if (!used[s]) return "the cell never reads " + source_name(c, s);
  return "";
}

Cell prune(const Cell& c) {
  const std::vector<char> live = live_nodes(c);
  std::vector<int> where(c.n(), -1);
  Cell p;
  p.hidden = c.hidden;
  for (int j = 0; j < c.n(); ++j)
    if (live[j]) {
      where[j] = p.n();
      p.nodes.push_back(c.nodes[j]);
    }
  for (Node& nd : p.nodes)
    for (int p2 = 0; p2 < nd.n_in; ++p2)
      if (nd.in[p2] >= kNode0) nd.in[p2] = static_cast<uint8_t>(kNode0 + where[nd.in[p2] - kNode0]);
  for (int i = 0; i < c.hidden; ++i) p.out[i] = where[c.out[i]];
  return p;
}

// ---- canonical form -----------------------------------------------------------------------------
Cell canonical(const Cell& c) {
  const std::string why = invalid_reason(c);
  if (!why.empty()) throw std::invalid_argument("invalid NAS-Bench-NLP cell: " + why);
  const int T = c.hidden, n = c.n();
  const Graph g = make_graph(c);
  int count = 0;
  Search s{g, {}, {}, 0};
  s.run(dense_ranks(g.labels, &count));
  const std::vector<int>& pi = s.best_pi;
  std::vector<int> new_node(n);
  for (int j = 0; j < n; ++j) new_node[j] = pi[1 + T + j] - (1 + T);
  auto new_src = [&](int src) {
    if (src == 0) return 0;
    if (src < kNode0) return pi[src];
    return kNode0 + new_node[src - kNode0];
  };
  Cell out;
  out.hidden = T;
  out.nodes.resize(n);
  for (int j = 0; j < n; ++j) {
    Node nd = c.nodes[j];
    for (int p = 0; p < nd.n_in; ++p) nd.in[p] = static_cast<uint8_t>(new_src(nd.in[p]));
    if (nd.op != kBlend) std::sort(nd.in.begin(), nd.in.begin() + nd.n_in);
    out.nodes[new_node[j]] = nd;
  }
  for (int i = 0; i < T; ++i) out.out[pi[1 + i] - 1] = new_node[c.out[i]];
  return out;
}

std::string to_json(const Cell& c) {
  std::string s = "{";
  for (int j = 0; j < c.n(); ++j) {
    if (j) s += ", ";
    s += "\"" + node_name(c, j) + "\": {\"op\": \"" + kOpNames[c.nodes[j].op] + "\", \"input\": [";
    for (int p = 0; p < c.nodes[j].n_in; ++p) {
      if (p) s += ", ";
      s += "\"" + source_name(c, c.nodes[j].in[p]) + "\"";
    }
    s += "]}";
  }
  return s + "}";
}

Md5Digest hash(const Cell& canonical_cell) {
  const std::string s = to_json(canonical_cell);
  return md5(s.data(), s.size());
}

// ---- the code table -----------------------------------------------------------------------------
Code intern(const Cell& c, uint64_t tag) {
  Cell cc = canonical(c);
  std::string js = to_json(cc);
  const Md5Digest d = md5(js.data(), js.size());
  uint64_t k = 0;
  for (int i = 0; i < 8; ++i) k = (k << 8) | d[i];
  if (k == 0) throw std::runtime_error("an NB-NLP cell hashes to the reserved code 0");
  const Code code = tag ? k ^ splitmix(tag) : k;
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  auto it = t.entries.find(code);
  if (it != t.entries.end()) {
    if (it->second.key != k || it->second.tag != tag ||
        to_json(*it->second.cell) != js)
      throw std::runtime_error("64-bit code collision between NB-NLP cells (code " + code_str(code) +
                               ")");
    return code;
  }
  const Cell* stored = nullptr;
  auto base = t.entries.find(k);
  if (base != t.entries.end()) {
    if (base->second.tag != 0 || to_json(*base->second.cell) != js)
      throw std::runtime_error("64-bit code collision between NB-NLP cells (key " + code_str(k) + ")");
    stored = base->second.cell;
  } else {
    t.cells.push_back(std::move(cc));
    stored = &t.cells.back();
    t.entries.emplace(k, Entry{stored, k, 0});
  }
  if (tag) t.entries.emplace(code, Entry{stored, k, tag});
  return code;
}

bool known(Code code) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  return t.entries.count(code) > 0;
}

namespace {
Entry entry(Code code) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  auto it = t.entries.find(code);
  if (it == t.entries.end())
    throw std::invalid_argument(code_str(code) +
                                " is not the code of an NB-NLP cell known to this process (a code "
                                "is a handle: parse the cell graph or its recepie_id first)");
  return it->second;
}
}  // namespace

void check_code(Code code) { entry(code); }
const Cell& lookup(Code code) { return *entry(code).cell; }
uint64_t tag_of(Code code) { return entry(code).tag; }
uint64_t key(Code code) { return entry(code).key; }
std::string hash_hex(Code code) { return hex(hash(lookup(code))); }

size_t table_size() {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  return t.cells.size();
}

// ---- sampling -----------------------------------------------------------------------------------
Cell generate(Rng& rng, int hidden, int intermediate, bool* ok) {
  const int T = hidden;
  Cell c;
  c.hidden = T;
  std::vector<int> acts;
  int i = 0;
  while (i < T + intermediate) {
    const int r = static_cast<int>(rng.below(6));  // main ops weighted 3:1:1:1
    if (r < 3) {
      const int k = rng.below(5) < 4 ? 2 : 3;
      std::vector<int> cands{0};
      for (int h = 0; h < T; ++h) cands.push_back(1 + h);
      cands.insert(cands.end(), acts.begin(), acts.end());
      Node lin;
      lin.op = kLinear;
      lin.n_in = static_cast<uint8_t>(std::min<size_t>(k, cands.size()));
      for (int p = 0; p < lin.n_in; ++p) lin.in[p] = static_cast<uint8_t>(pick(rng, cands));
      c.nodes.push_back(lin);
      ++i;
      Node act;
      act.op = static_cast<uint8_t>(kTanh + rng.below(3));
      act.n_in = 1;
      act.in[0] = static_cast<uint8_t>(kNode0 + c.n() - 1);
      c.nodes.push_back(act);
      acts.push_back(kNode0 + c.n() - 1);
      ++i;
    } else {
      const int op = r == 3 ? kBlend : (r == 4 ? kProd : kSum);
      const int k = op == kBlend ? 3 : 2;
      std::vector<int> cands;
      for (int h = 0; h < T; ++h) cands.push_back(1 + h);
      for (int j = 0; j < c.n(); ++j) cands.push_back(kNode0 + j);
      if (k <= static_cast<int>(cands.size())) {
        Node nd;
        nd.op = static_cast<uint8_t>(op);
        nd.n_in = static_cast<uint8_t>(k);
        for (int p = 0; p < k; ++p) nd.in[p] = static_cast<uint8_t>(pick(rng, cands));
        c.nodes.push_back(nd);
        ++i;
      }
    }
  }
  std::vector<int> all(c.n());
  for (int j = 0; j < c.n(); ++j) all[j] = j;
  for (int h = 0; h < T; ++h) c.out[h] = pick(rng, all);
  Cell p = prune(c);
  bool good = true;
  std::vector<char> used(kNode0, 0);
  for (const Node& nd : p.nodes)
    for (int q = 0; q < nd.n_in; ++q)
      if (nd.in[q] < kNode0) used[nd.in[q]] = 1;
  for (int s = 0; s <= T; ++s) good = good && used[s];
  for (int h = 0; h < T; ++h) {
    const Node& nd = p.nodes[p.out[h]];
    for (int q = 0; q < nd.n_in; ++q)
      if (nd.in[q] >= 1 && nd.in[q] < kNode0) good = false;
  }
  *ok = good;
  return p;
}

Code sample(Rng& rng) {
  const int T = kGenHidden[rng.below(3)];
  const int inter = kGenIntermediate[rng.below(3)];
  while (true) {
    bool ok = false;
    Cell c = generate(rng, T, inter, &ok);
    if (ok) return intern(c);
  }
}

std::vector<Code> sample_distinct(int64_t n, Rng& rng) {
  if (n < 0) throw std::invalid_argument("cannot draw " + std::to_string(n) + " NB-NLP cells");
  std::vector<Code> out;
  std::unordered_set<Code> seen;
  while (static_cast<int64_t>(out.size()) < n) {
    const Code c = sample(rng);
    if (seen.insert(c).second) out.push_back(c);
  }
  return out;
}

// ---- moves --------------------------------------------------------------------------------------
std::vector<Code> moves(Code code) {
  const Cell c = lookup(code);  // a copy: interning below may touch the table
  const int T = c.hidden, n = c.n();
  std::vector<Code> out;
  for (int j = 0; j < n; ++j) {
    const int op = c.nodes[j].op;
    std::vector<int> alts;
    if (is_activation(op)) {
      for (int a = kTanh; a <= kLeaky; ++a)
        if (a != op) alts.push_back(a);
    } else if (op == kSum) {
      alts.push_back(kProd);
    } else if (op == kProd) {
      alts.push_back(kSum);
    }
    for (int a : alts) {
      Cell m = c;
      m.nodes[j].op = static_cast<uint8_t>(a);
      out.push_back(finish(m));
    }
  }
  for (int j = 0; j < n; ++j) {
    const Node& nd = c.nodes[j];
    if (is_activation(nd.op)) continue;
    const std::vector<char> desc = descendants(c, j);
    std::vector<int> srcs;
    if (nd.op == kLinear) srcs.push_back(0);
    if (output_index(c, j) < 0)
      for (int h = 0; h < T; ++h) srcs.push_back(1 + h);
    for (int k = 0; k < n; ++k)
      if (!desc[k] && (nd.op != kLinear || is_activation(c.nodes[k].op))) srcs.push_back(kNode0 + k);
    for (int p = 0; p < nd.n_in; ++p)
      for (int s : srcs) {
        bool present = false;
        for (int q = 0; q < nd.n_in; ++q) present = present || nd.in[q] == s;
        if (present) continue;
        Cell m = c;
        m.nodes[j].in[p] = static_cast<uint8_t>(s);
        out.push_back(finish(prune(m)));
      }
  }
  return out;
}

std::vector<Code> neighbours(Code code) {
  const uint64_t own = key(code);
  std::unordered_set<uint64_t> seen{own};
  std::vector<Code> out;
  for (Code m : moves(code))
    if (m && seen.insert(m).second) out.push_back(m);
  return out;
}

Code mutate(Code code, Rng& rng) {
  const uint64_t own = key(code);
  const std::vector<Code> mv = moves(code);
  bool any = false;
  for (Code m : mv) any = any || (m && m != own);
  if (!any) {
    const int T = kGenHidden[rng.below(3)];
    const int inter = kGenIntermediate[rng.below(3)];
    while (true) {
      bool ok = false;
      Cell c = generate(rng, T, inter, &ok);
      if (!ok) continue;
      const Code m = intern(c);
      if (m != own) return m;
    }
  }
  while (true) {
    const Code m = mv[static_cast<size_t>(rng.below(mv.size()))];
    if (m && m != own) return m;
  }
}

// ---- predictor encoding and policy --------------------------------------------------------------
void features(Code code, float* out) {
  const Cell& c = lookup(code);
  std::fill(out, out + kFeatures, 0.0f);
  auto kind = [&](int s) {
    if (s == 0) return 0;
    if (s < kNode0) return s == 1 ? 1 : 2;
    return 3 + c.nodes[s - kNode0].op;
  };
  for (const Node& nd : c.nodes) {
    out[nd.op] += 1.0f;
    for (int p = 0; p < nd.n_in; ++p) out[kOps + kind(nd.in[p]) * kOps + nd.op] += 1.0f;
  }
  const int base = kOps * 11;
  out[base + c.hidden - 1] = 1.0f;
  for (int i = 0; i < c.hidden; ++i) out[base + kMaxHidden + i * kOps + c.nodes[c.out[i]].op] = 1.0f;
}

void to_decisions(Code code, uint8_t* d) {
  const Cell& c = lookup(code);
  for (int j = 0; j < kMaxNodes; ++j) {
    uint8_t* s = d + j * kPerSlot;
    if (j < c.n()) {
      s[0] = c.nodes[j].op;
      s[1] = static_cast<uint8_t>(output_index(c, j) + 1);
      for (int p = 0; p < kMaxInputs; ++p)
        s[2 + p] = p < c.nodes[j].n_in ? c.nodes[j].in[p] : static_cast<uint8_t>(kNoInput);
    } else {
      s[0] = kAbsent;
      s[1] = 0;
      for (int p = 0; p < kMaxInputs; ++p) s[2 + p] = kNoInput;
    }
  }
}

Code from_decisions(const uint8_t* d) {
  std::vector<int> where(kMaxNodes, -1);
  int n = 0;
  for (int j = 0; j < kMaxNodes; ++j)
    if (d[j * kPerSlot] != kAbsent) where[j] = n++;
  Cell c;
  std::map<int, int> roles;
  for (int j = 0; j < kMaxNodes; ++j) {
    const uint8_t* s = d + j * kPerSlot;
    if (s[0] == kAbsent) continue;
    Node nd;
    nd.op = s[0];
    for (int p = 0; p < kMaxInputs; ++p) {
      int src = s[2 + p];
      if (src == kNoInput) continue;
      if (src >= kNode0) {
        if (where[src - kNode0] < 0) return 0;
        src = kNode0 + where[src - kNode0];
      }
      nd.in[nd.n_in++] = static_cast<uint8_t>(src);
    }
    c.nodes.push_back(nd);
    if (s[1]) {
      if (roles.count(s[1] - 1)) return 0;
      roles[s[1] - 1] = where[j];
    }
  }
  const int T = static_cast<int>(roles.size());
  if (T == 0 || roles.rbegin()->first != T - 1) return 0;
  c.hidden = T;
  for (const auto& [i, j] : roles) c.out[i] = j;
  for (const Node& nd : c.nodes)
    for (int p = 0; p < nd.n_in; ++p)
      if (nd.in[p] >= 1 + T && nd.in[p] < kNode0) return 0;
  if (!invalid_reason(c).empty()) return 0;
  return intern(c);
}

}  // namespace zc::nbnlp
