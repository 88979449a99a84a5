#include "search.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_set>
#include <utility>

namespace zc::search {

namespace {
constexpr double kNegInf = -std::numeric_limits<double>::infinity();
// NaN scores rank below every number (never silently replaced by one).
inline double rank_key(double s) { return std::isnan(s) ? kNegInf : s; }

std::string str(int64_t v) { return std::to_string(v); }
std::string str(double v) { return std::to_string(v); }
}  // namespace

Algo algo_from_name(const std::string& name) {
  if (name == "rand" || name == "random") return Algo::kRandom;
  if (name == "ae" || name == "evolution" || name == "re") return Algo::kEvolution;
  if (name == "rl" || name == "reinforce") return Algo::kReinforce;
  if (name == "bp" || name == "predictor") return Algo::kPredictor;
  throw std::invalid_argument("unknown search algorithm '" + name +
                              "' (expected one of rand, ae, rl, bp)");
}

const char* algo_name(Algo a) {
  switch (a) {
    case Algo::kRandom: return "rand";
    case Algo::kEvolution: return "ae";
    case Algo::kReinforce: return "rl";
    case Algo::kPredictor: return "bp";
  }
  return "?";
}

namespace {
// Recursive-descent parser of ensemble expressions: node := integer | rule '(' node (',' node)* ')'.
struct EnsParser {
  const std::string& s;
  size_t i = 0;
  [[noreturn]] void fail(const std::string& what) const {
    throw std::invalid_argument("ensemble expression '" + s + "': " + what + " at position " +
                                std::to_string(i));
  }
  template <class Node>
  Node parse() {
    Node node;
    if (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      int64_t v = 0;
      while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
        v = v * 10 + (s[i++] - '0');
        if (v > 1000000) fail("column number too large");
      }
      node.rule = 0;
      node.column = v;
      return node;
    }
    size_t j = i;
    while (j < s.size() && std::isalpha(static_cast<unsigned char>(s[j]))) ++j;
    const std::string rule = s.substr(i, j - i);
    if (rule == "logrank") node.rule = 1;
    else if (rule == "meanrank") node.rule = 2;
    else if (rule == "vote") node.rule = 3;
    else fail("unknown rule '" + rule + "' (expected logrank, meanrank or vote)");
    i = j;
    if (i >= s.size() || s[i] != '(') fail("expected '('");
    ++i;
    for (;;) {
      node.children.push_back(parse<Node>());
      if (i < s.size() && s[i] == ',') {
        ++i;
        continue;
      }
      if (i < s.size() && s[i] == ')') {
        ++i;
        break;
      }
      fail("expected ',' or ')'");
    }
    return node;
  }
};

template <class Node>
void collect_columns(const Node& n, std::vector<int64_t>& out) {
  if (n.rule == 0) out.push_back(n.column);
  for (const auto& c : n.children) collect_columns(c, out);
}

template <class Node>
Node parse_ensemble(const std::string& expr) {
  EnsParser p{expr};
  Node n = p.template parse<Node>();
  if (p.i != expr.size()) p.fail("unexpected text after the expression");
  return n;
}
}  // namespace

std::vector<int64_t> ensemble_columns(const std::string& expr) {
  std::vector<int64_t> out;
  collect_columns(parse_ensemble<EnsembleNode>(expr), out);
  return out;
}

void validate(const Config& c) {
  auto bad = [](const std::string& what) { throw std::invalid_argument(what); };
  const int a = static_cast<int>(c.algo);
  if (a < 0 || a > 3) bad("unknown search algorithm id " + str(int64_t{a}));
  if (c.budget < 1) bad("budget " + str(c.budget) + " is out of range: expected >= 1 trained models");
  if (c.warmup < 0) bad("warmup " + str(c.warmup) + " is out of range: expected 0 (off) or more cells");
  if (c.move < 0) bad("move " + str(c.move) + " is out of range: expected 0 (off) or more proposals");
  if (c.population < 1) bad("population " + str(c.population) + " is out of range: expected >= 1");
  if (c.tournament < 1 || c.tournament > c.population)
    bad("tournament " + str(c.tournament) + " is out of range: expected 1 to the population (" +
        str(c.population) + ")");
  if (!(c.move_random_prob >= 0.0 && c.move_random_prob <= 1.0))
    bad("move_random_prob " + str(c.move_random_prob) + " is not a probability in [0, 1]");
  if (!(c.rl_lr > 0.0 && std::isfinite(c.rl_lr)))
    bad("rl_lr " + str(c.rl_lr) + " must be a positive number");
  if (!(c.rl_momentum >= 0.0 && c.rl_momentum < 1.0))
    bad("rl_momentum " + str(c.rl_momentum) + " must be in [0, 1)");
  if (c.rl_warmup_batch < 1) bad("rl_warmup_batch " + str(c.rl_warmup_batch) + " must be >= 1");
  if (c.bp_batch < 1) bad("bp_batch " + str(c.bp_batch) + " is out of range: expected >= 1");
  if (c.bp_hidden < 1 || c.bp_hidden > 512)
    bad("bp_hidden " + str(c.bp_hidden) + " is out of range: expected 1 to 512");
  if (c.bp_iters < 0) bad("bp_iters " + str(c.bp_iters) + " must be >= 0");
  if (c.bp_warmup_iters < 0) bad("bp_warmup_iters " + str(c.bp_warmup_iters) + " must be >= 0");
  if (c.bp_pairs < 1) bad("bp_pairs " + str(c.bp_pairs) + " must be >= 1");
  if (!(c.bp_lr > 0.0 && std::isfinite(c.bp_lr)))
    bad("bp_lr " + str(c.bp_lr) + " must be a positive number");
  if (!(c.bp_weight_decay >= 0.0 && std::isfinite(c.bp_weight_decay)))
    bad("bp_weight_decay " + str(c.bp_weight_decay) + " must be >= 0");
  if (c.bp_candidates < 0) bad("bp_candidates " + str(c.bp_candidates) + " must be >= 0 (0 = all)");
  if (c.score_members < 1 || c.score_members > 64)
    bad("score_members " + str(c.score_members) + " is out of range: expected 1 to 64");
  if (c.ensemble.empty()) {
    if (c.score_members != 1)
      bad("score_members " + str(c.score_members) + " needs an ensemble expression that combines them");
  } else {
    for (int64_t k : ensemble_columns(c.ensemble))
      if (k >= c.score_members)
        bad("ensemble '" + c.ensemble + "' reads column " + str(k) + " but score_members is " +
            str(c.score_members));
  }
  if (c.max_steps < 0) bad("max_steps " + str(c.max_steps) + " must be >= 0 (0 = automatic)");
}

// ------------------------------------------------------------------------------ ground truth
GroundTruth::GroundTruth(SpacePtr space, std::vector<Code> codes, std::vector<double> val,
                         std::vector<double> test)
    : space_(std::move(space)), code_(std::move(codes)), val_(std::move(val)),
      test_(std::move(test)) {
  if (!space_) throw std::invalid_argument("ground truth needs a space");
  const size_t n = code_.size();
  if (n == 0) throw std::invalid_argument("the ground-truth table is empty");
  if (n > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
    throw std::invalid_argument("the ground-truth table has too many rows");
  for (const auto* tab : {&val_, &test_}) {
    const char* name = tab == &val_ ? "validation" : "test";
    if (tab->size() != n)
      throw std::invalid_argument(std::string(name) + " accuracy table has " +
                                  str(static_cast<int64_t>(tab->size())) + " entries, expected " +
                                  str(static_cast<int64_t>(n)) + " (one per cell)");
    for (size_t i = 0; i < n; ++i)
      if (!std::isfinite((*tab)[i]))
        throw std::invalid_argument(std::string(name) + " accuracy of " +
                                    space_->describe(code_[i]) + " (row " +
                                    str(static_cast<int64_t>(i)) + ") is not finite");
  }
  const uint64_t size = space_->size();
  if (space_->dense_keys()) dense_.assign(size, -1);
  else map_.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    space_->check(code_[i]);
    const Key k = space_->key(code_[i]);
    int32_t prev = -1;
    if (space_->dense_keys()) {
      prev = dense_[k];
      if (prev < 0) dense_[k] = static_cast<int32_t>(i);
    } else {
      auto [it, fresh] = map_.emplace(k, static_cast<int32_t>(i));
      if (!fresh) prev = it->second;
    }
    if (prev >= 0)
      throw std::invalid_argument("rows " + str(int64_t{prev}) + " and " +
                                  str(static_cast<int64_t>(i)) + " of the ground truth are the same " +
                                  space_->name() + " network (" + space_->describe(code_[i]) +
                                  "): merge them first (e.g. average their repeats)");
  }
  complete_ = size > 0 && n == size;
}

int32_t GroundTruth::row_of_key(Key k) const {
  if (space_->dense_keys()) return k < dense_.size() ? dense_[k] : -1;
  auto it = map_.find(k);
  return it == map_.end() ? -1 : it->second;
}

// ------------------------------------------------------------------------------------------
Search::Search(const Config& cfg, std::shared_ptr<const GroundTruth> gt,
               std::shared_ptr<const std::vector<double>> full_scores,
               std::shared_ptr<const Task> task)
    : cfg_(cfg), gt_(std::move(gt)), full_(std::move(full_scores)), rng_(cfg.seed) {
  validate(cfg_);
  if (!gt_) throw std::invalid_argument("search needs a ground-truth table");
  space_ = gt_->space();
  pool_ = !gt_->complete();
  const int64_t N_rows = universe();
  auto bad = [](const std::string& what) { throw std::invalid_argument(what); };
  if (task && !task->feasible.empty()) {
    if (task->feasible.size() != static_cast<size_t>(N_rows))
      bad("the feasibility mask has " + str(static_cast<int64_t>(task->feasible.size())) +
          " entries, expected " + str(N_rows) + " (one per ground-truth row)");
    // a mask that excludes nothing is no constraint (the run is then bit-identical to one
    // without a mask)
    if (std::find(task->feasible.begin(), task->feasible.end(), 0) != task->feasible.end()) {
      constrained_ = true;
      ok_ = task->feasible;
    }
  }
  if (restricted()) {
    for (int64_t r = 0; r < N_rows; ++r)
      if (allowed(static_cast<int32_t>(r))) members_.push_back(static_cast<int32_t>(r));
    n_members_ = static_cast<int64_t>(members_.size());
  } else {
    n_members_ = N_rows;
  }
  if (n_members_ == 0) bad("no cell of the universe satisfies the constraint");
  if (task && !task->cost.empty()) {
    if (task->cost.size() != static_cast<size_t>(N_rows))
      bad("the cost table has " + str(static_cast<int64_t>(task->cost.size())) +
          " entries, expected " + str(N_rows) + " (one per ground-truth row)");
    for (int64_t r = 0; r < N_rows; ++r)
      if (allowed(static_cast<int32_t>(r)) && !std::isfinite(task->cost[r]))
        bad("the cost of " + space_->describe(gt_->code(static_cast<int32_t>(r))) + " (row " +
            str(r) + ") is not finite; leave such cells out with the feasibility mask");
    mo_ = true;
    cost_ = task->cost;
  }
  res_.members = n_members_;
  const int64_t N = n_members_;  // the sizes below are bounded by the cells the search may train
  const std::string what = pool_ ? " pool" : " space";
  const std::string where =
      constrained_ ? " (the " + str(N) + " cells of the " + str(N_rows) + "-cell " +
                         space_->name() + what + " within the constraint)"
                   : " (the " + str(N) + " cells of the " + space_->name() + what + ")";
  if (cfg_.budget > N)
    bad("budget " + str(cfg_.budget) + " is out of range: expected 1 to " + str(N) +
        " trained models" + where);
  if (cfg_.warmup > N)
    bad("warmup " + str(cfg_.warmup) + " is out of range: expected 0 (off) to " + str(N) +
        " cells" + where);
  if (cfg_.move > N)
    bad("move " + str(cfg_.move) + " is out of range: expected 0 (off) to " + str(N) +
        " proposals" + where);
  if (cfg_.algo == Algo::kEvolution && cfg_.population > N)
    bad("population " + str(cfg_.population) + " is out of range: expected 1 to " + str(N) + where);
  if (cfg_.algo == Algo::kPredictor && cfg_.bp_batch > N)
    bad("bp_batch " + str(cfg_.bp_batch) + " is out of range: expected 1 to " + str(N) + where);
  if (full_ && full_->size() != static_cast<size_t>(N_rows * cfg_.score_members))
    bad("a complete score table needs " + str(N_rows * cfg_.score_members) + " entries (" +
        str(cfg_.score_members) + " per ground-truth row), got " +
        str(static_cast<int64_t>(full_->size())));
  max_steps_ = cfg_.max_steps > 0 ? cfg_.max_steps : std::max<int64_t>(100000, 1000 * cfg_.budget);
  if (!cfg_.ensemble.empty()) ens_ = parse_ensemble<EnsembleNode>(cfg_.ensemble);
  trained_at_.assign(N_rows, -1);
  used_.assign(N_rows, 0);
  mark_.assign(N_rows, 0);
  if (mo_) {
    bool first = true;
    for (int64_t r = 0; r < N_rows; ++r) {
      const int32_t i = static_cast<int32_t>(r);
      if (!allowed(i)) continue;
      const double lo = std::min(gt_->val(i), gt_->test(i)), hi = std::max(gt_->val(i), gt_->test(i));
      res_.acc_lo = first ? lo : std::min(res_.acc_lo, lo);
      res_.acc_hi = first ? hi : std::max(res_.acc_hi, hi);
      res_.cost_lo = first ? cost_[r] : std::min(res_.cost_lo, cost_[r]);
      res_.cost_hi = first ? cost_[r] : std::max(res_.cost_hi, cost_[r]);
      first = false;
    }
    res_.hv_curve.reserve(cfg_.budget);
    res_.hv_val_curve.reserve(cfg_.budget);
  }
  res_.trained.reserve(cfg_.budget);
  res_.val.reserve(cfg_.budget);
  res_.test.reserve(cfg_.budget);
  res_.test_curve.reserve(cfg_.budget);
  res_.best_val_curve.reserve(cfg_.budget);
  res_.oracle_test_curve.reserve(cfg_.budget);

  switch (cfg_.algo) {
    case Algo::kRandom:
      phase_ = cfg_.warmup > 0 ? Phase::kWarmup : Phase::kMain;
      break;
    case Algo::kEvolution:
      phase_ = cfg_.warmup > 0 ? Phase::kWarmup : Phase::kInit;
      pop_row_.reserve(cfg_.population);
      pop_val_.reserve(cfg_.population);
      break;
    case Algo::kReinforce: {
      phase_ = cfg_.warmup > 0 ? Phase::kWarmup : Phase::kMain;
      dec_size_ = space_->decision_sizes();
      n_dec_ = dec_size_.size();
      dec_off_.resize(n_dec_);
      for (size_t d = 0; d < n_dec_; ++d) {
        if (dec_size_[d] < 1 || dec_size_[d] > 255)
          bad(space_->name() + ": policy decision " + str(static_cast<int64_t>(d)) + " has " +
              str(int64_t{dec_size_[d]}) + " categories (expected 1 to 255)");
        dec_off_[d] = static_cast<int>(n_logits_);
        n_logits_ += static_cast<size_t>(dec_size_[d]);
      }
      theta_.assign(n_logits_, 0.0);
      m_.assign(n_logits_, 0.0);
      v_.assign(n_logits_, 0.0);
      cum_.assign(n_logits_, 0.0);
      prob_.assign(n_logits_, 0.0);
      expect_.assign(n_logits_, 0.0);
      if (restricted()) {
        pool_dec_.assign(static_cast<size_t>(N) * n_dec_, 0);
        for (int64_t m = 0; m < N; ++m)
          space_->to_decisions(gt_->code(members_[m]), &pool_dec_[m * n_dec_]);
        pool_cum_.assign(N, 0.0);
      }
      rl_refresh_probs();
      break;
    }
    case Algo::kPredictor:
      phase_ = cfg_.warmup > 0 ? Phase::kWarmup : Phase::kFit;
      pred_ = std::make_unique<RankPredictor>(space_, static_cast<int>(cfg_.bp_hidden), cfg_.bp_lr,
                                              cfg_.bp_weight_decay, rng_);
      break;
  }
}

void Search::tell(const int32_t* rows, const double* scores, size_t n) {
  const int64_t N = universe();
  for (size_t i = 0; i < n; ++i)
    if (rows[i] < 0 || rows[i] >= N)
      throw std::invalid_argument("tell: row " + str(int64_t{rows[i]}) +
                                  " is out of range [0, " + str(N - 1) + "]");
  const int64_t m = cfg_.score_members;
  if (zc_.empty()) {
    zc_.assign(static_cast<size_t>(N * m), 0.0);
    known_.assign(N, 0);
  }
  for (size_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < m; ++j) zc_[rows[i] * m + j] = scores[i * m + j];
    known_[rows[i]] = 1;
  }
}

void Search::next_stamp() {
  if (++stamp_ == 0) {  // wrapped around: old marks could collide, clear them
    std::fill(mark_.begin(), mark_.end(), 0u);
    stamp_ = 1;
  }
}

double Search::score(int32_t row, int64_t member) const {
  const size_t at = static_cast<size_t>(row * cfg_.score_members + member);
  return full_ ? (*full_)[at] : zc_[at];
}

void Search::set_scores(const int32_t* rows, size_t n, std::vector<double>& out) const {
  if (cfg_.ensemble.empty()) {
    out.resize(n);
    for (size_t i = 0; i < n; ++i) out[i] = score(rows[i]);
    return;
  }
  eval_node(ens_, rows, n, out);
}

void Search::eval_node(const EnsembleNode& node, const int32_t* rows, size_t n,
                       std::vector<double>& out) const {
  out.assign(n, 0.0);
  if (node.rule == 0) {
    for (size_t i = 0; i < n; ++i) out[i] = score(rows[i], node.column);
    return;
  }
  const size_t m = node.children.size();
  std::vector<std::vector<double>> cols(m);
  for (size_t k = 0; k < m; ++k) eval_node(node.children[k], rows, n, cols[k]);
  if (node.rule == 3) {
    // Copeland count: i beats j when at least half of the children score i strictly higher
    for (size_t i = 0; i < n; ++i) {
      double wins = 0.0;
      for (size_t j = 0; j < n; ++j) {
        if (i == j) continue;
        size_t higher = 0;
        for (size_t k = 0; k < m; ++k) higher += cols[k][i] > cols[k][j];
        wins += 2 * higher >= m;
      }
      out[i] = wins;
    }
    return;
  }
  // average ranks (1 = lowest, NaN lowest, ties share their mean rank) per child
  std::vector<std::pair<double, size_t>> col(n);
  for (size_t k = 0; k < m; ++k) {
    for (size_t i = 0; i < n; ++i) col[i] = {rank_key(cols[k][i]), i};
    std::sort(col.begin(), col.end());
    for (size_t a = 0; a < n;) {
      size_t b = a;
      while (b + 1 < n && col[b + 1].first == col[a].first) ++b;
      const double rank = 0.5 * static_cast<double>(a + b) + 1.0;
      for (size_t t = a; t <= b; ++t)
        out[col[t].second] += node.rule == 1 ? std::log(rank / static_cast<double>(n))
                                             : rank / static_cast<double>(m);
      a = b + 1;
    }
  }
}

bool Search::have_scores(const int32_t* rows, size_t n) {
  if (!full_) {
    const bool any_known = !known_.empty();
    next_stamp();
    for (size_t i = 0; i < n; ++i) {
      const int32_t r = rows[i];
      if (any_known && known_[r]) continue;
      if (mark_[r] == stamp_) continue;
      mark_[r] = stamp_;
      need_.push_back(r);
    }
    if (!need_.empty()) return false;
  }
  for (size_t i = 0; i < n; ++i) {
    if (!used_[rows[i]]) {
      used_[rows[i]] = 1;
      ++res_.scores_used;
    }
  }
  return true;
}

bool Search::draw_warmup(const Rng& saved) {
  order_ = sample_distinct_rows(cfg_.warmup);
  if (!have_scores(order_.data(), order_.size())) {
    rng_ = saved;
    return false;
  }
  res_.proposals += static_cast<int64_t>(order_.size());
  return true;
}

double Search::train(int32_t row) {
  if (!allowed(row))  // an invariant of the operators; never a silent budget violation
    throw std::logic_error("the search tried to train " + space_->describe(gt_->code(row)) +
                           " (row " + str(int64_t{row}) + "), which is outside the constraint");
  const double v = gt_->val(row);
  const double t = gt_->test(row);
  const size_t k = res_.trained.size();
  if (is_trained(row)) {
    ++res_.revisits;
  } else {
    trained_at_[row] = static_cast<int32_t>(k);
    ++res_.distinct;
  }
  ++res_.queries;
  res_.trained.push_back(row);
  res_.val.push_back(v);
  res_.test.push_back(t);
  if (k == 0) {
    res_.best_val_curve.push_back(v);
    res_.test_curve.push_back(t);
    res_.oracle_test_curve.push_back(t);
  } else {
    // strictly better: on a tie the cell reached first stays selected
    const bool better = v > res_.best_val_curve.back();
    res_.best_val_curve.push_back(better ? v : res_.best_val_curve.back());
    res_.test_curve.push_back(better ? t : res_.test_curve.back());
    res_.oracle_test_curve.push_back(std::max(t, res_.oracle_test_curve.back()));
  }
  if (mo_) mo_record(row);
  return v;
}

// ------------------------------------------------------------------- the universe's operators
int32_t Search::row_of(Code c) const {
  const int32_t r = gt_->row_of_code(c);
  if (r < 0)
    throw std::runtime_error("the " + space_->name() + " space produced " + space_->describe(c) +
                             ", which the ground truth does not hold although it claims to cover "
                             "the whole space");
  return r;
}

namespace {
// Rejection sampling under a constraint stops with an error after this many draws in a row that
// all miss the feasible cells (expected draws: cells / feasible cells; a hang guard only).
constexpr int64_t kMaxRejections = 100000000;
// The space's mutation is retried this many times before the driver picks a feasible one-step
// neighbour uniformly itself (docs/hardware.md; NB201: never reached in practice, (23/24)^1000).
constexpr int kMutateTries = 1000;
}  // namespace

int32_t Search::sample_row() {
  if (pool_)  // uniform over the members (every row of an unconstrained pool)
    return members_[rng_.below(static_cast<uint64_t>(n_members_))];
  if (!constrained_) return row_of(space_->sample(rng_));
  // the space's own sampling rule, conditioned on feasibility by rejection
  for (int64_t t = 0; t < kMaxRejections; ++t) {
    const int32_t r = row_of(space_->sample(rng_));
    if (ok_[r]) return r;
  }
  throw std::runtime_error("the " + space_->name() + " sampler drew no cell within the constraint "
                           "in " + str(kMaxRejections) + " tries (" + str(n_members_) +
                           " feasible cells)");
}

std::vector<int32_t> Search::sample_distinct_rows(int64_t n) {
  std::vector<int32_t> out;
  out.reserve(static_cast<size_t>(n));
  if (!pool_ && !constrained_) {
    codes_ = space_->sample_distinct(n, rng_);
    for (Code c : codes_) out.push_back(row_of(c));
    return out;
  }
  if (!pool_) {  // constrained complete space: distinct draws of the constrained sampler
    next_stamp();
    while (static_cast<int64_t>(out.size()) < n) {
      const int32_t r = sample_row();
      if (mark_[r] == stamp_) continue;
      mark_[r] = stamp_;
      out.push_back(r);
    }
    return out;
  }
  const int64_t N = n_members_;
  if (n * 4 <= N) {  // sparse draw: rejection against the stamp table
    next_stamp();
    while (static_cast<int64_t>(out.size()) < n) {
      const int32_t r = members_[rng_.below(static_cast<uint64_t>(N))];
      if (mark_[r] == stamp_) continue;
      mark_[r] = stamp_;
      out.push_back(r);
    }
    return out;
  }
  std::vector<int32_t> perm(members_);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t j = i + static_cast<int64_t>(rng_.below(static_cast<uint64_t>(N - i)));
    std::swap(perm[i], perm[j]);
  }
  perm.resize(n);
  return perm;
}

const std::vector<int32_t>& Search::pool_neighbours(int32_t r) {
  // The members nearest to r in the predictor encoding (squared Euclidean distance), as many as
  // the space's own neighbourhood has (or all others in a smaller pool), nearest first, ties by
  // code. Members: the pool's cells, or the feasible ones under a constraint. Computed once per
  // row.
  const int64_t N = universe();
  if (pool_nb_.empty()) {
    pool_nb_.resize(N);
    pool_nb_done_.assign(N, 0);
  }
  if (pool_nb_done_[r]) return pool_nb_[r];
  const int F = space_->features();
  std::vector<float> a(F), b(F);
  space_->encode(gt_->code(r), a.data());
  std::vector<std::tuple<double, Code, int32_t>> d;
  d.reserve(members_.size());
  for (const int32_t i : members_) {
    if (i == r) continue;
    const Code c = gt_->code(i);
    space_->encode(c, b.data());
    double s = 0.0;
    for (int f = 0; f < F; ++f) s += (static_cast<double>(a[f]) - b[f]) * (static_cast<double>(a[f]) - b[f]);
    d.emplace_back(s, c, i);
  }
  const size_t k = std::min(d.size(), static_cast<size_t>(std::max(1, space_->neighbourhood_size())));
  std::partial_sort(d.begin(), d.begin() + k, d.end());
  auto& out = pool_nb_[r];
  out.clear();
  for (size_t i = 0; i < k; ++i) out.push_back(std::get<2>(d[i]));
  pool_nb_done_[r] = 1;
  return out;
}

int32_t Search::mutate_row(int32_t r) {
  if (!pool_ && !constrained_) return row_of(space_->mutate(gt_->code(r), rng_));
  if (!pool_) {
    // constrained complete space: the space's own mutation, conditioned on feasibility by
    // rejection, as long as some one-step neighbour is feasible
    neighbour_rows(r, scratch_nb_);
    if (space_feasible_nb_) {
      for (int t = 0; t < kMutateTries; ++t) {
        const int32_t c = row_of(space_->mutate(gt_->code(r), rng_));
        if (ok_[c]) return c;
      }
      return scratch_nb_[rng_.below(scratch_nb_.size())];
    }
    // else: no feasible one-step neighbour; scratch_nb_ holds the nearest feasible members
    if (scratch_nb_.empty()) return r;  // a single feasible cell
    return scratch_nb_[rng_.below(scratch_nb_.size())];
  }
  const auto& nb = pool_neighbours(r);
  if (nb.empty()) return r;  // a pool of one cell
  return nb[rng_.below(nb.size())];
}

void Search::neighbour_rows(int32_t r, std::vector<int32_t>& out) {
  out.clear();
  if (pool_) {
    const auto& nb = pool_neighbours(r);
    out.assign(nb.begin(), nb.end());
    return;
  }
  space_->neighbours(gt_->code(r), codes_);
  for (Code c : codes_) {
    const int32_t row = row_of(c);
    if (allowed(row)) out.push_back(row);
  }
  space_feasible_nb_ = !out.empty();
  if (constrained_ && out.empty()) {  // the pool rule, where the space's moves reach no feasible cell
    const auto& nb = pool_neighbours(r);
    out.assign(nb.begin(), nb.end());
  }
}

int32_t Search::sample_untrained() {
  // Rejection sampling: expected tries 1 / (1 - trained fraction); a whole-universe budget costs
  // about N ln N draws in total (coupon collector), still cheap.
  for (;;) {
    const int32_t r = sample_row();
    if (!is_trained(r)) return r;
  }
}

void Search::sample_untrained_distinct(int64_t m, std::vector<int32_t>& out) {
  out.clear();
  m = std::min(m, untrained());
  next_stamp();
  while (static_cast<int64_t>(out.size()) < m) {
    const int32_t r = sample_row();
    if (is_trained(r) || mark_[r] == stamp_) continue;
    mark_[r] = stamp_;
    out.push_back(r);
  }
}

void Search::sort_by_score(std::vector<int32_t>& rows) const {
  std::vector<double> sc;
  set_scores(rows.data(), rows.size(), sc);
  std::vector<std::tuple<double, Code, int32_t>> key(rows.size());
  for (size_t i = 0; i < rows.size(); ++i)
    key[i] = {rank_key(sc[i]), gt_->code(rows[i]), rows[i]};
  std::sort(key.begin(), key.end(), [](const auto& a, const auto& b) {
    return std::get<0>(a) != std::get<0>(b) ? std::get<0>(a) > std::get<0>(b)
                                            : std::get<1>(a) < std::get<1>(b);
  });
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = std::get<2>(key[i]);
}

int32_t Search::best_by_score(const int32_t* rows, size_t n) const {
  std::vector<double> sc;
  set_scores(rows, n, sc);
  size_t best = 0;
  double bk = rank_key(sc[0]);
  for (size_t i = 1; i < n; ++i) {
    const double k = rank_key(sc[i]);
    if (k > bk) {
      bk = k;
      best = i;
    }
  }
  return rows[best];
}

void Search::order_by_score(std::vector<int32_t>& rows, size_t picks) {
  if (!mo_) {
    sort_by_score(rows);
    return;
  }
  std::vector<double> sc;
  set_scores(rows.data(), rows.size(), sc);
  mo_order(rows, sc, picks);
}

int32_t Search::choose_by_score(const int32_t* rows, size_t n) {
  if (!mo_) return best_by_score(rows, n);
  std::vector<double> sc;
  set_scores(rows, n, sc);
  return rows[mo_best(rows, n, sc.data())];
}

size_t Search::prefer_untrained(int32_t* rows, size_t n) const {
  size_t k = 0;
  for (size_t i = 0; i < n; ++i)
    if (!is_trained(rows[i])) std::swap(rows[k++], rows[i]);
  return k > 0 ? k : n;
}

// ------------------------------------------------------------------ multi-objective selection
// docs/hardware.md, "Two objectives". A selection compares a set of cells under two objectives:
// an accuracy estimate (validation accuracy of trained cells, the proxy score, or the
// predictor's output) and the cost. Each objective becomes percentile ranks among the compared
// cells (scale-free: synflow spans 1e30..1e61, accuracies and costs have their own units), and
// the cell with the largest augmented Chebyshev utility under the selection's weight lambda
// (uniform in [0, 1], drawn per selection) wins. Over many selections the weights sweep the
// whole front, including its non-convex parts (which a weighted sum cannot reach).
double Search::utility(double a, double g) const {
  const double x = lam_ * a, y = (1.0 - lam_) * g;
  return std::min(x, y) + kChebyshevRho * (x + y);
}

void Search::percentiles(const double* v, size_t n, std::vector<double>& out) {
  out.assign(n, 0.0);
  std::vector<std::pair<double, size_t>> col(n);
  for (size_t i = 0; i < n; ++i) col[i] = {rank_key(v[i]), i};
  std::sort(col.begin(), col.end());
  for (size_t a = 0; a < n;) {
    size_t b = a;
    while (b + 1 < n && col[b + 1].first == col[a].first) ++b;
    const double p = (0.5 * static_cast<double>(a + b) + 0.5) / static_cast<double>(n);
    for (size_t t = a; t <= b; ++t) out[col[t].second] = p;
    a = b + 1;
  }
}

double Search::percentile_in(const std::vector<double>& sorted, double x) {
  const auto lo = std::lower_bound(sorted.begin(), sorted.end(), x);
  const auto hi = std::upper_bound(lo, sorted.end(), x);
  const double below = static_cast<double>(lo - sorted.begin());
  const double equal = static_cast<double>(hi - lo);
  return (below + 0.5 * equal) / static_cast<double>(sorted.size());
}

size_t Search::mo_best(const int32_t* rows, size_t n, const double* acc) {
  std::vector<double> pa, pg, negc(n);
  percentiles(acc, n, pa);
  for (size_t i = 0; i < n; ++i) negc[i] = -cost_[rows[i]];
  percentiles(negc.data(), n, pg);
  size_t best = 0;
  double bu = utility(pa[0], pg[0]);
  for (size_t i = 1; i < n; ++i) {
    const double u = utility(pa[i], pg[i]);
    if (u > bu) {
      bu = u;
      best = i;
    }
  }
  return best;
}

void Search::mo_order(std::vector<int32_t>& rows, const std::vector<double>& acc, size_t picks) {
  const size_t n = rows.size();
  picks = std::min(picks, n);
  std::vector<double> pa, pg, negc(n);
  percentiles(acc.data(), n, pa);
  for (size_t i = 0; i < n; ++i) negc[i] = -cost_[rows[i]];
  percentiles(negc.data(), n, pg);
  std::vector<size_t> idx(n);
  for (size_t i = 0; i < n; ++i) idx[i] = i;
  for (size_t k = 0; k < picks; ++k) {
    lam_ = rng_.uniform();
    size_t best = k;
    double bu = utility(pa[idx[k]], pg[idx[k]]);
    for (size_t i = k + 1; i < n; ++i) {
      const double u = utility(pa[idx[i]], pg[idx[i]]);
      if (u > bu) {
        bu = u;
        best = i;
      }
    }
    std::swap(idx[k], idx[best]);
  }
  std::vector<int32_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = rows[idx[i]];
  rows.swap(out);
}

double Search::acc_unit(double acc) const {
  const double span = res_.acc_hi - res_.acc_lo;
  return span > 0 ? (acc - res_.acc_lo) / span : 1.0;
}

double Search::cost_goodness(double cost) const {
  const double span = res_.cost_hi - res_.cost_lo;
  return span > 0 ? (res_.cost_hi - cost) / span : 1.0;
}

double Search::hypervolume(bool test) const {
  // 2-D hypervolume of the union of boxes [0, a_i] x [0, g_i]: sweep by a descending
  std::vector<std::pair<double, double>> p;
  p.reserve(res_.front.size());
  for (const int32_t r : res_.front)
    p.emplace_back(acc_unit(test ? gt_->test(r) : gt_->val(r)), cost_goodness(cost_[r]));
  std::sort(p.begin(), p.end(), [](const auto& x, const auto& y) {
    return x.first != y.first ? x.first > y.first : x.second > y.second;
  });
  double hv = 0.0, gmax = 0.0;
  for (const auto& [a, g] : p) {
    if (g > gmax) {
      hv += a * (g - gmax);
      gmax = g;
    }
  }
  return hv;
}

void Search::mo_record(int32_t row) {
  auto& f = res_.front;
  const double v = gt_->val(row), c = cost_[row];
  bool keep = std::find(f.begin(), f.end(), row) == f.end();
  for (size_t i = 0; keep && i < f.size(); ++i) {
    const double vf = gt_->val(f[i]), cf = cost_[f[i]];
    if (vf >= v && cf <= c && (vf > v || cf < c)) keep = false;  // dominated by a member
  }
  if (keep) {
    size_t k = 0;
    for (size_t i = 0; i < f.size(); ++i) {
      const double vf = gt_->val(f[i]), cf = cost_[f[i]];
      const bool dominated = v >= vf && c <= cf && (v > vf || c < cf);
      if (!dominated) f[k++] = f[i];
    }
    f.resize(k);
    // by cost ascending, ties by row
    const auto at = std::lower_bound(f.begin(), f.end(), row, [this](int32_t a, int32_t b) {
      return cost_[a] != cost_[b] ? cost_[a] < cost_[b] : a < b;
    });
    f.insert(at, row);
  }
  res_.hv_val_curve.push_back(hypervolume(false));
  res_.hv_curve.push_back(hypervolume(true));
  if (cfg_.algo == Algo::kReinforce) {  // the history RL's two-objective reward ranks against
    mo_val_seen_.insert(std::upper_bound(mo_val_seen_.begin(), mo_val_seen_.end(), v), v);
    mo_cost_seen_.insert(std::upper_bound(mo_cost_seen_.begin(), mo_cost_seen_.end(), -c), -c);
  }
}

std::vector<int32_t> Search::ask() {
  if (done_) return {};
  while (budget_left() && res_.steps < max_steps_) {
    need_.clear();
    if (!step()) {
      ++res_.asks;
      return need_;
    }
  }
  res_.failed = budget_left();
  done_ = true;
  return {};
}

void Search::run() {
  const auto need = ask();
  if (!need.empty())
    throw std::runtime_error("search needs proxy scores for " +
                             str(static_cast<int64_t>(need.size())) +
                             " cells: give a complete score table or drive it with ask/tell");
}

bool Search::step() {
  switch (cfg_.algo) {
    case Algo::kRandom: return step_random();
    case Algo::kEvolution: return step_evolution();
    case Algo::kReinforce: return step_reinforce();
    case Algo::kPredictor: return step_predictor();
  }
  return true;
}
// ---------------------------------------------------------------------------------- RAND
// Baseline: train uniformly random untrained cells. +warmup(W): score W random cells and train
// them in descending score order, then continue at random. +move(M): each step draws M random
// untrained cells and trains the one with the best score.
bool Search::step_random() {
  const Rng saved = rng_;
  if (phase_ == Phase::kWarmup) {
    if (!draw_warmup(saved)) return false;
    order_by_score(order_, static_cast<size_t>(cfg_.budget));
    order_pos_ = 0;
    phase_ = Phase::kWarmTrain;
    ++res_.steps;
    return true;
  }
  if (phase_ == Phase::kWarmTrain) {
    train(order_[order_pos_++]);
    if (order_pos_ >= order_.size()) phase_ = Phase::kMain;
    ++res_.steps;
    return true;
  }
  if (cfg_.move > 0) {
    sample_untrained_distinct(cfg_.move, scratch_);
    if (!have_scores(scratch_.data(), scratch_.size())) {
      rng_ = saved;
      return false;
    }
    res_.proposals += static_cast<int64_t>(scratch_.size());
    draw_lambda();
    train(choose_by_score(scratch_.data(), scratch_.size()));
  } else {
    ++res_.proposals;
    train(sample_untrained());
  }
  ++res_.steps;
  return true;
}

// ------------------------------------------------------------------------------------ AE
// Regularised (aging) evolution, Real et al. 2019: population P, tournament S drawn uniformly
// with replacement, parent = best validation accuracy of the tournament, child = one mutation
// (the space's; in a pool, one of the parent's nearest pool members), the child replaces the
// oldest member. +warmup(W): the initial population is the top-P of W random cells by score
// (trained best first). +move(M): score M distinct random neighbours of the parent (all of them
// when M >= the neighbourhood size) and take the best, or with probability move_random_prob a
// random one of them; already-trained neighbours are passed over while an untrained one is left
// (see prefer_untrained). The move also replaces the random proposals of the initial population
// (those not filled by a warmup): each initial member is the best-scored of M random untrained
// cells, so every cell AE trains is picked by the proxy.
bool Search::step_evolution() {
  const Rng saved = rng_;
  const size_t P = static_cast<size_t>(cfg_.population);
  if (phase_ == Phase::kWarmup) {
    if (!draw_warmup(saved)) return false;
    order_by_score(order_, P);
    if (order_.size() > P) order_.resize(P);
    order_pos_ = 0;
    phase_ = Phase::kInit;
    ++res_.steps;
    return true;
  }
  if (phase_ == Phase::kInit) {
    int32_t c;
    if (order_pos_ < order_.size()) {
      c = order_[order_pos_++];  // counted as a proposal by the warmup
    } else if (cfg_.move > 0) {  // zero-cost move on the random proposal: best of M random cells
      sample_untrained_distinct(cfg_.move, scratch_);
      if (!have_scores(scratch_.data(), scratch_.size())) {
        rng_ = saved;
        return false;
      }
      res_.proposals += static_cast<int64_t>(scratch_.size());
      draw_lambda();
      c = choose_by_score(scratch_.data(), scratch_.size());
    } else {
      c = sample_untrained();
      ++res_.proposals;
    }
    pop_row_.push_back(c);
    pop_val_.push_back(train(c));
    if (pop_row_.size() >= P) {
      phase_ = Phase::kMain;
      pop_oldest_ = 0;
    }
    ++res_.steps;
    return true;
  }
  // tournament (with replacement) -> parent
  size_t best;
  if (!mo_) {
    best = static_cast<size_t>(rng_.below(P));
    for (int64_t s = 1; s < cfg_.tournament; ++s) {
      const size_t k = static_cast<size_t>(rng_.below(P));
      if (pop_val_[k] > pop_val_[best]) best = k;
    }
  } else {  // one weight for the step: it picks the parent and (with a move) the child
    draw_lambda();
    std::vector<int32_t> at(static_cast<size_t>(cfg_.tournament)), rows(at.size());
    std::vector<double> val(at.size());
    for (size_t s = 0; s < at.size(); ++s) {
      at[s] = static_cast<int32_t>(rng_.below(P));
      rows[s] = pop_row_[at[s]];
      val[s] = pop_val_[at[s]];
    }
    best = static_cast<size_t>(at[mo_best(rows.data(), rows.size(), val.data())]);
  }
  const int32_t parent = pop_row_[best];
  int32_t child;
  if (cfg_.move > 0) {
    neighbour_rows(parent, scratch_);
    const size_t nb = scratch_.size();
    if (nb == 0) {
      child = mutate_row(parent);
      ++res_.proposals;
    } else {
      size_t n = nb;
      if (static_cast<size_t>(cfg_.move) < nb) {  // M distinct neighbours: partial Fisher-Yates
        n = static_cast<size_t>(cfg_.move);
        for (size_t i = 0; i < n; ++i) {
          const size_t j = i + static_cast<size_t>(rng_.below(nb - i));
          std::swap(scratch_[i], scratch_[j]);
        }
      }
      if (!have_scores(scratch_.data(), n)) {
        rng_ = saved;
        return false;
      }
      res_.proposals += static_cast<int64_t>(n);
      n = prefer_untrained(scratch_.data(), n);
      if (cfg_.move_random_prob > 0.0 && rng_.uniform() < cfg_.move_random_prob)
        child = scratch_[rng_.below(n)];
      else
        child = choose_by_score(scratch_.data(), n);
    }
  } else {
    child = mutate_row(parent);
    ++res_.proposals;
  }
  const double v = train(child);
  pop_row_[pop_oldest_] = child;
  pop_val_[pop_oldest_] = v;
  pop_oldest_ = (pop_oldest_ + 1) % P;
  ++res_.steps;
  return true;
}

std::vector<int32_t> Search::population() const {
  if (cfg_.algo != Algo::kEvolution) return {};
  std::vector<int32_t> out;
  const size_t P = pop_row_.size();
  for (size_t i = 0; i < P; ++i) {
    const size_t k = P == static_cast<size_t>(cfg_.population) ? (pop_oldest_ + i) % P : i;
    out.push_back(pop_row_[k]);
  }
  return out;
}

// ------------------------------------------------------------------------------------ RL
// REINFORCE (Williams 1992) with a factorised categorical policy, one softmax per decision of the
// space (NB201: 5 ops per edge; NB101: an op per node and a Bernoulli per edge):
// p(cell) = prod_d softmax(theta_d)[c_d]. After each trained cell with reward r (validation
// accuracy, %), the baseline b is the bias-corrected exponential moving average of the rewards
// (momentum 0.9, updated with r first, as in NAS-Bench-201's reinforce.py) and Adam (lr 0.01)
// descends L = -(r - b) log p(cell): dL/dtheta_d,o = -(r - b)(1[o = c_d] - p_d(o)).
// Decisions that describe no valid architecture are drawn again (the restriction to valid cells is
// left out of the gradient: with the moving-average baseline its expected contribution is ~0).
// In a pool the policy is restricted exactly to the pool, q(cell) = p(cell) / sum_pool p, and the
// gradient of log q replaces p_d(o) with its expectation under q (docs/spaces.md, "Pools").
// +warmup(W): before any training, the policy is pre-trained by the same rule on W cells that it
// samples itself in batches of rl_warmup_batch, with reward = the cell's percentile (0..100) among
// all proxy scores seen during warmup (scale-free: synflow spans 1e30..1e61); the baseline and
// Adam's moments are reset when training starts. +move(M): each step samples M cells from the
// policy and trains only the one with the best proxy score (untrained samples first, see
// prefer_untrained); the update uses that cell.
void Search::rl_refresh_probs() {
  for (size_t d = 0; d < n_dec_; ++d) {
    const int K = dec_size_[d];
    double* th = theta_.data() + dec_off_[d];
    double* pr = prob_.data() + dec_off_[d];
    double* cu = cum_.data() + dec_off_[d];
    double mx = th[0];
    for (int o = 1; o < K; ++o) mx = std::max(mx, th[o]);
    double z = 0.0;
    for (int o = 0; o < K; ++o) z += (pr[o] = std::exp(th[o] - mx));
    const double inv = 1.0 / z;
    double c = 0.0;
    for (int o = 0; o < K; ++o) {
      pr[o] *= inv;
      c += pr[o];
      cu[o] = c;
    }
    cu[K - 1] = 2.0;  // guard against rounding: the last category catches u close to 1
  }
  if (!restricted()) {
    expect_ = prob_;
    return;
  }
  // restricted to the members (the pool's cells, or the feasible ones under a constraint):
  // q(member) proportional to prod_d p_d(dec[member][d])
  const int64_t N = n_members_;
  std::vector<double> logq(N);
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t r = 0; r < N; ++r) {
    const uint8_t* dr = &pool_dec_[r * n_dec_];
    double s = 0.0;
    for (size_t d = 0; d < n_dec_; ++d) s += std::log(prob_[dec_off_[d] + dr[d]]);
    logq[r] = s;
    mx = std::max(mx, s);
  }
  double z = 0.0;
  for (int64_t r = 0; r < N; ++r) z += (logq[r] = std::exp(logq[r] - mx));
  std::fill(expect_.begin(), expect_.end(), 0.0);
  double c = 0.0;
  for (int64_t r = 0; r < N; ++r) {
    const double q = logq[r] / z;
    c += q;
    pool_cum_[r] = c;
    const uint8_t* dr = &pool_dec_[r * n_dec_];
    for (size_t d = 0; d < n_dec_; ++d) expect_[dec_off_[d] + dr[d]] += q;
  }
  pool_cum_[N - 1] = 2.0;
}

int32_t Search::rl_sample(uint8_t* dec) {
  if (restricted()) {  // inverse CDF of q over the members (exactly q; a constrained space gets
                       // the same distribution as rejection from p, in bounded time)
    const double u = rng_.uniform();
    const int32_t m = static_cast<int32_t>(
        std::upper_bound(pool_cum_.begin(), pool_cum_.end(), u) - pool_cum_.begin());
    std::copy(&pool_dec_[m * n_dec_], &pool_dec_[m * n_dec_] + n_dec_, dec);
    return members_[m];
  }
  constexpr int kTries = 100000;
  for (int t = 0; t < kTries; ++t) {
    for (size_t d = 0; d < n_dec_; ++d) {
      const double u = rng_.uniform();
      const double* cu = cum_.data() + dec_off_[d];
      int o = 0;
      while (u >= cu[o]) ++o;
      dec[d] = static_cast<uint8_t>(o);
    }
    Code c;
    if (space_->from_decisions(dec, &c)) return row_of(c);
  }
  throw std::runtime_error("the REINFORCE policy drew no valid " + space_->name() +
                           " architecture in 100,000 tries");
}

void Search::rl_baseline_update(double r) {
  ema_num_ = cfg_.rl_momentum * ema_num_ + (1.0 - cfg_.rl_momentum) * r;
  ema_den_ = cfg_.rl_momentum * ema_den_ + (1.0 - cfg_.rl_momentum);
}

void Search::rl_update(const std::vector<uint8_t>& dec, const double* adv, size_t n) {
  std::vector<double>& g = rl_grad_;
  g.resize(n_logits_);
  const double inv = 1.0 / static_cast<double>(n);
  double a = 0.0;
  for (size_t i = 0; i < n; ++i) a += adv[i];
  for (size_t j = 0; j < n_logits_; ++j) g[j] = a * expect_[j] * inv;  // the -E[1[o = c_d]] part
  for (size_t i = 0; i < n; ++i)
    for (size_t d = 0; d < n_dec_; ++d) g[dec_off_[d] + dec[i * n_dec_ + d]] -= adv[i] * inv;
  // Adam (Kingma & Ba 2015), bias corrections from running powers of beta1, beta2
  constexpr double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  adam_p1_ *= b1;
  adam_p2_ *= b2;
  const double s1 = cfg_.rl_lr / (1.0 - adam_p1_);
  const double r2 = 1.0 / (1.0 - adam_p2_);
  for (size_t j = 0; j < n_logits_; ++j) {
    m_[j] = b1 * m_[j] + (1.0 - b1) * g[j];
    v_[j] = b2 * v_[j] + (1.0 - b2) * g[j] * g[j];
    theta_[j] -= s1 * m_[j] / (std::sqrt(v_[j] * r2) + eps);
  }
  rl_refresh_probs();
}

std::vector<double> Search::policy() const {
  if (cfg_.algo != Algo::kReinforce) return {};
  return prob_;
}

std::vector<double> Search::pool_probabilities() const {
  if (cfg_.algo != Algo::kReinforce || !restricted()) return {};
  std::vector<double> q(static_cast<size_t>(universe()), 0.0);
  double prev = 0.0;
  for (size_t m = 0; m < pool_cum_.size(); ++m) {
    const double c = m + 1 == pool_cum_.size() ? 1.0 : pool_cum_[m];
    q[members_[m]] = c - prev;
    prev = c;
  }
  return q;
}

bool Search::step_reinforce() {
  const Rng saved = rng_;
  if (phase_ == Phase::kWarmup) {
    const int64_t done = res_.proposals;  // during warmup every proposal is a warmup sample
    const int64_t n = std::min(cfg_.rl_warmup_batch, cfg_.warmup - done);
    std::vector<uint8_t> dec(static_cast<size_t>(n) * n_dec_);
    scratch_.resize(n);
    for (int64_t i = 0; i < n; ++i) scratch_[i] = rl_sample(&dec[i * n_dec_]);
    if (!have_scores(scratch_.data(), scratch_.size())) {
      rng_ = saved;
      return false;
    }
    // the batch's scores as compared with every cell seen in the warmup so far
    std::vector<double> batch_score(n);
    if (cfg_.ensemble.empty()) {
      for (int64_t i = 0; i < n; ++i) batch_score[i] = rank_key(score(scratch_[i]));
    } else {  // an ensemble ranks over the cells compared: all cells seen so far
      warm_rows_.insert(warm_rows_.end(), scratch_.begin(), scratch_.end());
      std::vector<double> all;
      set_scores(warm_rows_.data(), warm_rows_.size(), all);
      warm_seen_.clear();
      for (double v : all) warm_seen_.push_back(rank_key(v));
      std::sort(warm_seen_.begin(), warm_seen_.end());
      for (int64_t i = 0; i < n; ++i) batch_score[i] = rank_key(all[all.size() - n + i]);
    }
    if (cfg_.ensemble.empty())
      for (int64_t i = 0; i < n; ++i)  // insert the batch into the sorted history
        warm_seen_.insert(std::upper_bound(warm_seen_.begin(), warm_seen_.end(), batch_score[i]),
                          batch_score[i]);
    std::vector<double> adv(n);
    if (mo_)  // the batch's costs join the history their percentiles are taken in
      for (int64_t i = 0; i < n; ++i) {
        const double g = -cost_[scratch_[i]];
        warm_cost_seen_.insert(
            std::upper_bound(warm_cost_seen_.begin(), warm_cost_seen_.end(), g), g);
      }
    for (int64_t i = 0; i < n; ++i) {
      double r = 100.0 * percentile_in(warm_seen_, batch_score[i]);
      if (mo_) {  // two objectives: each sample's reward under its own weight
        draw_lambda();
        r = 100.0 * utility(r / 100.0, percentile_in(warm_cost_seen_, -cost_[scratch_[i]]));
      }
      rl_baseline_update(r);
      adv[i] = r - rl_baseline();
    }
    rl_update(dec, adv.data(), static_cast<size_t>(n));
    res_.proposals += n;
    if (res_.proposals >= cfg_.warmup) {
      phase_ = Phase::kMain;
      ema_num_ = ema_den_ = 0.0;
      adam_p1_ = adam_p2_ = 1.0;
      std::fill(m_.begin(), m_.end(), 0.0);
      std::fill(v_.begin(), v_.end(), 0.0);
      warm_seen_.clear();
      warm_seen_.shrink_to_fit();
      warm_rows_.clear();
      warm_rows_.shrink_to_fit();
      warm_cost_seen_.clear();
      warm_cost_seen_.shrink_to_fit();
    }
    ++res_.steps;
    return true;
  }
  std::vector<uint8_t>& dec = rl_dec_;
  dec.resize(n_dec_);
  int32_t row;
  draw_lambda();  // MO: the weight of this step's choice (with a move) and reward
  if (cfg_.move > 0) {
    const int64_t m = cfg_.move;
    std::vector<uint8_t> all(static_cast<size_t>(m) * n_dec_);
    scratch_.resize(m);
    for (int64_t i = 0; i < m; ++i) scratch_[i] = rl_sample(&all[i * n_dec_]);
    if (!have_scores(scratch_.data(), scratch_.size())) {
      rng_ = saved;
      return false;
    }
    res_.proposals += m;
    // the chosen sample's own decisions feed the update: remember where each row was drawn
    std::vector<int32_t> drawn(scratch_.begin(), scratch_.end());
    const size_t n = prefer_untrained(scratch_.data(), scratch_.size());
    row = choose_by_score(scratch_.data(), n);
    const size_t at = static_cast<size_t>(std::find(drawn.begin(), drawn.end(), row) - drawn.begin());
    std::copy(&all[at * n_dec_], &all[at * n_dec_] + n_dec_, dec.begin());
  } else {
    row = rl_sample(dec.data());
    ++res_.proposals;
  }
  double r = train(row);
  if (mo_)  // percentiles among every query so far (this one included), scalarised
    r = 100.0 * utility(percentile_in(mo_val_seen_, r), percentile_in(mo_cost_seen_, -cost_[row]));
  rl_baseline_update(r);
  const double adv = r - rl_baseline();
  rl_update(dec, &adv, 1);
  ++res_.steps;
  return true;
}

// ------------------------------------------------------------------------------------ BP
// Predictor-based search (after BRP-NAS): in rounds of K = bp_batch cells, fit the ranking
// predictor (predictor.hpp) on all cells trained so far (validation accuracy), rank the untrained
// cells of the universe (all of them, or bp_candidates random ones), and train the K best
// predicted. The first round, before any accuracy is known, trains K random cells. +warmup(W):
// pre-train the predictor on the proxy ranking of W random cells (the paper: 256), so the first
// round already trains the top predicted cells; later refits fine-tune those weights. +move(M):
// each round proposes max(M, K) cells (top predicted; random in a first round without warmup),
// scores them, and trains the K with the best proxy scores.
bool Search::step_predictor() {
  const Rng saved = rng_;
  const int64_t K = cfg_.bp_batch;
  auto codes_of = [this](const std::vector<int32_t>& rows) {
    std::vector<Code> c(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) c[i] = gt_->code(rows[i]);
    return c;
  };
  if (phase_ == Phase::kWarmup) {
    if (!draw_warmup(saved)) return false;
    std::vector<double> y;
    set_scores(order_.data(), order_.size(), y);
    pred_->fit(codes_of(order_), y, cfg_.bp_warmup_iters, cfg_.bp_pairs, rng_);
    bp_fitted_ = true;
    phase_ = Phase::kFit;
    ++res_.steps;
    return true;
  }
  const int64_t want = std::max(K, cfg_.move);
  if (phase_ == Phase::kFit) {
    if (!res_.trained.empty()) {
      pred_->fit(codes_of(res_.trained), res_.val, cfg_.bp_iters, cfg_.bp_pairs, rng_);
      bp_fitted_ = true;
    }
    if (!bp_fitted_) {
      sample_untrained_distinct(want, cand_);
    } else {
      std::vector<int32_t> pool;
      if (cfg_.bp_candidates > 0) {
        sample_untrained_distinct(cfg_.bp_candidates, pool);
      } else {
        pool.reserve(static_cast<size_t>(untrained()));
        for (int64_t r = 0; r < universe(); ++r)
          if (!is_trained(static_cast<int32_t>(r)) && allowed(static_cast<int32_t>(r)))
            pool.push_back(static_cast<int32_t>(r));
      }
      std::vector<float> f;
      pred_->predict_many(codes_of(pool), f);
      if (mo_) {  // predicted accuracy and cost: successive scalarised picks
        std::vector<double> pred(f.begin(), f.end());
        mo_order(pool, pred, static_cast<size_t>(want));
        pool.resize(std::min(static_cast<size_t>(want), pool.size()));
        cand_ = pool;
        res_.proposals += static_cast<int64_t>(cand_.size());
        phase_ = Phase::kMain;
        ++res_.steps;
        return true;
      }
      std::vector<std::tuple<float, Code, int32_t>> key;
      key.reserve(pool.size());
      for (size_t i = 0; i < pool.size(); ++i)
        key.emplace_back(std::isnan(f[i]) ? -INFINITY : f[i], gt_->code(pool[i]), pool[i]);
      const size_t n = std::min(static_cast<size_t>(want), key.size());
      auto cmp = [](const auto& a, const auto& b) {
        return std::get<0>(a) != std::get<0>(b) ? std::get<0>(a) > std::get<0>(b)
                                                : std::get<1>(a) < std::get<1>(b);
      };
      std::partial_sort(key.begin(), key.begin() + n, key.end(), cmp);
      cand_.resize(n);
      for (size_t i = 0; i < n; ++i) cand_[i] = std::get<2>(key[i]);
    }
    res_.proposals += static_cast<int64_t>(cand_.size());
    phase_ = Phase::kMain;
    ++res_.steps;
    return true;
  }
  // kMain: train K of the round's candidates
  if (cfg_.move > 0) {
    if (!have_scores(cand_.data(), cand_.size())) {
      rng_ = saved;
      return false;
    }
    order_by_score(cand_, static_cast<size_t>(K));
  }
  const size_t n = std::min(static_cast<size_t>(K), cand_.size());
  for (size_t i = 0; i < n && budget_left(); ++i) train(cand_[i]);
  phase_ = Phase::kFit;
  ++res_.steps;
  return true;
}

// ----------------------------------------------------------------------------------- bench
BenchResult bench(const Config& cfg, std::shared_ptr<const GroundTruth> gt,
                  std::shared_ptr<const std::vector<double>> scores, int64_t repeats,
                  std::shared_ptr<const Task> task) {
  validate(cfg);
  if (repeats < 1)
    throw std::invalid_argument("bench repeats must be >= 1, got " + str(repeats));
  if (!scores) throw std::invalid_argument("bench needs a complete score table");
  BenchResult out;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t r = 0; r < repeats; ++r) {
    Config c = cfg;
    c.seed = cfg.seed + static_cast<uint64_t>(r);
    Search s(c, gt, scores, task);
    s.run();
    const Result& res = s.result();
    out.steps += res.steps;
    out.proposals += res.proposals;
    out.trained += res.queries;
    ++out.searches;
  }
  const auto t1 = std::chrono::steady_clock::now();
  out.seconds = std::chrono::duration<double>(t1 - t0).count();
  return out;
}

}  // namespace zc::search
