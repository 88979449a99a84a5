#include "search.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

namespace zc::search {

using nb201::kEdges;
using nb201::kOps;
using nb201::kSpaceSize;

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

void validate(const Config& c) {
  auto bad = [](const std::string& what) { throw std::invalid_argument(what); };
  const int a = static_cast<int>(c.algo);
  if (a < 0 || a > 3) bad("unknown search algorithm id " + str(int64_t{a}));
  if (c.budget < 1 || c.budget > kSpaceSize)
    bad("budget " + str(c.budget) + " is out of range: expected 1 to 15,625 trained models "
        "(the size of the NB201 space)");
  if (c.warmup < 0 || c.warmup > kSpaceSize)
    bad("warmup " + str(c.warmup) + " is out of range: expected 0 (off) to 15,625 cells "
        "(the size of the NB201 space)");
  if (c.move < 0 || c.move > kSpaceSize)
    bad("move " + str(c.move) + " is out of range: expected 0 (off) to 15,625 proposals");
  if (c.population < 1 || c.population > kSpaceSize)
    bad("population " + str(c.population) + " is out of range: expected 1 to 15,625 "
        "(the size of the NB201 space)");
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
  if (c.bp_batch < 1 || c.bp_batch > kSpaceSize)
    bad("bp_batch " + str(c.bp_batch) + " is out of range: expected 1 to 15,625");
  if (c.bp_hidden < 1 || c.bp_hidden > 512)
    bad("bp_hidden " + str(c.bp_hidden) + " is out of range: expected 1 to 512");
  if (c.bp_iters < 0) bad("bp_iters " + str(c.bp_iters) + " must be >= 0");
  if (c.bp_warmup_iters < 0) bad("bp_warmup_iters " + str(c.bp_warmup_iters) + " must be >= 0");
  if (c.bp_pairs < 1) bad("bp_pairs " + str(c.bp_pairs) + " must be >= 1");
  if (!(c.bp_lr > 0.0 && std::isfinite(c.bp_lr)))
    bad("bp_lr " + str(c.bp_lr) + " must be a positive number");
  if (!(c.bp_weight_decay >= 0.0 && std::isfinite(c.bp_weight_decay)))
    bad("bp_weight_decay " + str(c.bp_weight_decay) + " must be >= 0");
  if (c.max_steps < 0) bad("max_steps " + str(c.max_steps) + " must be >= 0 (0 = automatic)");
}

GroundTruth::GroundTruth(std::vector<double> v, std::vector<double> t)
    : val(std::move(v)), test(std::move(t)) {
  for (const auto* tab : {&val, &test}) {
    const char* name = tab == &val ? "validation" : "test";
    if (tab->size() != static_cast<size_t>(kSpaceSize))
      throw std::invalid_argument(std::string(name) + " accuracy table has " +
                                  str(static_cast<int64_t>(tab->size())) +
                                  " entries, expected 15,625 (one per NB201 cell)");
    for (size_t i = 0; i < tab->size(); ++i)
      if (!std::isfinite((*tab)[i]))
        throw std::invalid_argument(std::string(name) + " accuracy of cell code " +
                                    str(static_cast<int64_t>(i)) + " is not finite");
  }
}

// ------------------------------------------------------------------------------------------
Search::Search(const Config& cfg, std::shared_ptr<const GroundTruth> gt,
               std::shared_ptr<const std::vector<double>> full_scores)
    : cfg_(cfg), gt_(std::move(gt)), full_(std::move(full_scores)), rng_(cfg.seed) {
  validate(cfg_);
  if (!gt_) throw std::invalid_argument("search needs a ground-truth table");
  if (full_ && full_->size() != static_cast<size_t>(kSpaceSize))
    throw std::invalid_argument("a complete score table needs 15,625 entries, got " +
                                str(static_cast<int64_t>(full_->size())));
  max_steps_ = cfg_.max_steps > 0 ? cfg_.max_steps : std::max<int64_t>(100000, 1000 * cfg_.budget);
  trained_at_.assign(kSpaceSize, -1);
  used_.assign(kSpaceSize, 0);
  mark_.assign(kSpaceSize, 0);
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
      pop_code_.reserve(cfg_.population);
      pop_val_.reserve(cfg_.population);
      break;
    case Algo::kReinforce:
      phase_ = cfg_.warmup > 0 ? Phase::kWarmup : Phase::kMain;
      rl_refresh_probs();
      break;
    case Algo::kPredictor:
      phase_ = cfg_.warmup > 0 ? Phase::kWarmup : Phase::kFit;
      pred_ = std::make_unique<RankPredictor>(static_cast<int>(cfg_.bp_hidden), cfg_.bp_lr,
                                              cfg_.bp_weight_decay, rng_);
      break;
  }
}

void Search::tell(const int32_t* codes, const double* scores, size_t n) {
  for (size_t i = 0; i < n; ++i) nb201::check_code(codes[i]);
  if (zc_.empty()) {
    zc_.assign(kSpaceSize, 0.0);
    known_.assign(kSpaceSize, 0);
  }
  for (size_t i = 0; i < n; ++i) {
    zc_[codes[i]] = scores[i];
    known_[codes[i]] = 1;
  }
}

void Search::next_stamp() {
  if (++stamp_ == 0) {  // wrapped around: old marks could collide, clear them
    std::fill(mark_.begin(), mark_.end(), 0u);
    stamp_ = 1;
  }
}

double Search::score(int32_t code) const { return full_ ? (*full_)[code] : zc_[code]; }

bool Search::have_scores(const int32_t* codes, size_t n) {
  if (!full_) {
    const bool any_known = !known_.empty();
    next_stamp();
    for (size_t i = 0; i < n; ++i) {
      const int32_t c = codes[i];
      if (any_known && known_[c]) continue;
      if (mark_[c] == stamp_) continue;
      mark_[c] = stamp_;
      need_.push_back(c);
    }
    if (!need_.empty()) return false;
  }
  for (size_t i = 0; i < n; ++i) {
    if (!used_[codes[i]]) {
      used_[codes[i]] = 1;
      ++res_.scores_used;
    }
  }
  return true;
}

bool Search::draw_warmup(const Rng& saved) {
  order_ = sample_distinct(cfg_.warmup);
  if (!have_scores(order_.data(), order_.size())) {
    rng_ = saved;
    return false;
  }
  res_.proposals += static_cast<int64_t>(order_.size());
  return true;
}

double Search::train(int32_t code) {
  const double v = gt_->val[code];
  const double t = gt_->test[code];
  const size_t k = res_.trained.size();
  if (is_trained(code)) {
    ++res_.revisits;
  } else {
    trained_at_[code] = static_cast<int32_t>(k);
    ++res_.distinct;
  }
  ++res_.queries;
  res_.trained.push_back(code);
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
  return v;
}

int32_t Search::sample_untrained() {
  // Rejection sampling: expected tries 1 / (1 - trained fraction); a whole-space budget costs
  // about N ln N draws in total (coupon collector), still cheap.
  for (;;) {
    const int32_t c = nb201::sample(rng_);
    if (!is_trained(c)) return c;
  }
}

void Search::sample_untrained_distinct(int64_t m, std::vector<int32_t>& out) {
  out.clear();
  m = std::min(m, untrained());
  next_stamp();
  while (static_cast<int64_t>(out.size()) < m) {
    const int32_t c = nb201::sample(rng_);
    if (is_trained(c) || mark_[c] == stamp_) continue;
    mark_[c] = stamp_;
    out.push_back(c);
  }
}

std::vector<int32_t> Search::sample_distinct(int64_t n) {
  if (n * 4 <= kSpaceSize) {  // sparse draw: rejection against a stamp table
    std::vector<int32_t> out;
    out.reserve(n);
    next_stamp();
    while (static_cast<int64_t>(out.size()) < n) {
      const int32_t c = nb201::sample(rng_);
      if (mark_[c] == stamp_) continue;
      mark_[c] = stamp_;
      out.push_back(c);
    }
    return out;
  }
  return nb201::sample_distinct(n, rng_);
}

void Search::sort_by_score(std::vector<int32_t>& codes) const {
  std::vector<std::pair<double, int32_t>> key(codes.size());
  for (size_t i = 0; i < codes.size(); ++i) key[i] = {rank_key(score(codes[i])), codes[i]};
  std::sort(key.begin(), key.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = key[i].second;
}

int32_t Search::best_by_score(const int32_t* codes, size_t n) const {
  size_t best = 0;
  double bk = rank_key(score(codes[0]));
  for (size_t i = 1; i < n; ++i) {
    const double k = rank_key(score(codes[i]));
    if (k > bk) {
      bk = k;
      best = i;
    }
  }
  return codes[best];
}

size_t Search::prefer_untrained(int32_t* codes, size_t n) const {
  size_t k = 0;
  for (size_t i = 0; i < n; ++i)
    if (!is_trained(codes[i])) std::swap(codes[k++], codes[i]);
  return k > 0 ? k : n;
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
    sort_by_score(order_);
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
    train(best_by_score(scratch_.data(), scratch_.size()));
  } else {
    ++res_.proposals;
    train(sample_untrained());
  }
  ++res_.steps;
  return true;
}

// ------------------------------------------------------------------------------------ AE
// Regularised (aging) evolution, Real et al. 2019: population P, tournament S drawn uniformly
// with replacement, parent = best validation accuracy of the tournament, child = one-edge
// mutation to a different op, the child replaces the oldest member. +warmup(W): the initial
// population is the top-P of W random cells by score (trained best first). +move(M): score M
// distinct random one-edge neighbours of the parent (all 24 when M >= 24) and take the best, or
// with probability move_random_prob a random one of them; already-trained neighbours are passed
// over while an untrained one is left (see prefer_untrained). The move also replaces the random
// proposals of the initial population (those not filled by a warmup): each initial member is the
// best-scored of M random untrained cells, so every cell AE trains is picked by the proxy.
bool Search::step_evolution() {
  const Rng saved = rng_;
  const size_t P = static_cast<size_t>(cfg_.population);
  if (phase_ == Phase::kWarmup) {
    if (!draw_warmup(saved)) return false;
    sort_by_score(order_);
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
      c = best_by_score(scratch_.data(), scratch_.size());
    } else {
      c = sample_untrained();
      ++res_.proposals;
    }
    pop_code_.push_back(c);
    pop_val_.push_back(train(c));
    if (pop_code_.size() >= P) {
      phase_ = Phase::kMain;
      pop_oldest_ = 0;
    }
    ++res_.steps;
    return true;
  }
  // tournament (with replacement) -> parent
  size_t best = static_cast<size_t>(rng_.below(P));
  for (int64_t s = 1; s < cfg_.tournament; ++s) {
    const size_t k = static_cast<size_t>(rng_.below(P));
    if (pop_val_[k] > pop_val_[best]) best = k;
  }
  const int32_t parent = pop_code_[best];
  int32_t child;
  if (cfg_.move > 0) {
    const auto nb = nb201::neighbours(parent);
    int32_t cand[nb201::kNeighbours];
    size_t n = nb201::kNeighbours;
    std::copy(nb.begin(), nb.end(), cand);
    if (cfg_.move < nb201::kNeighbours) {  // M distinct neighbours: partial Fisher-Yates
      n = static_cast<size_t>(cfg_.move);
      for (size_t i = 0; i < n; ++i) {
        const size_t j = i + static_cast<size_t>(rng_.below(nb201::kNeighbours - i));
        std::swap(cand[i], cand[j]);
      }
    }
    if (!have_scores(cand, n)) {
      rng_ = saved;
      return false;
    }
    res_.proposals += static_cast<int64_t>(n);
    n = prefer_untrained(cand, n);
    if (cfg_.move_random_prob > 0.0 && rng_.uniform() < cfg_.move_random_prob)
      child = cand[rng_.below(n)];
    else
      child = best_by_score(cand, n);
  } else {
    child = nb201::mutate(parent, rng_);
    ++res_.proposals;
  }
  const double v = train(child);
  pop_code_[pop_oldest_] = child;
  pop_val_[pop_oldest_] = v;
  pop_oldest_ = (pop_oldest_ + 1) % P;
  ++res_.steps;
  return true;
}

std::vector<int32_t> Search::population() const {
  if (cfg_.algo != Algo::kEvolution) return {};
  std::vector<int32_t> out;
  const size_t P = pop_code_.size();
  for (size_t i = 0; i < P; ++i) {
    const size_t k = P == static_cast<size_t>(cfg_.population) ? (pop_oldest_ + i) % P : i;
    out.push_back(pop_code_[k]);
  }
  return out;
}

// ------------------------------------------------------------------------------------ RL
// REINFORCE (Williams 1992) with a factorised categorical policy, one softmax over the 5 ops per
// edge: p(cell) = prod_e softmax(theta_e)[op_e]. After each trained cell with reward r (validation
// accuracy, %), the baseline b is the bias-corrected exponential moving average of the rewards
// (momentum 0.9, updated with r first, as in NAS-Bench-201's reinforce.py) and Adam (lr 0.01)
// descends L = -(r - b) log p(cell): dL/dtheta_e,o = -(r - b)(1[o = op_e] - p_e(o)).
// +warmup(W): before any training, the policy is pre-trained by the same rule on W cells that it
// samples itself in batches of rl_warmup_batch, with reward = the cell's percentile (0..100) among
// all proxy scores seen during warmup (scale-free: synflow spans 1e30..1e61); the baseline and
// Adam's moments are reset when training starts. +move(M): each step samples M cells from the
// policy and trains only the one with the best proxy score (untrained samples first, see
// prefer_untrained); the update uses that cell.
void Search::rl_refresh_probs() {
  for (int e = 0; e < kEdges; ++e) {
    double mx = theta_[e][0];
    for (int o = 1; o < kOps; ++o) mx = std::max(mx, theta_[e][o]);
    double z = 0.0;
    for (int o = 0; o < kOps; ++o) z += (prob_[e][o] = std::exp(theta_[e][o] - mx));
    const double inv = 1.0 / z;
    double c = 0.0;
    for (int o = 0; o < kOps; ++o) {
      prob_[e][o] *= inv;
      c += prob_[e][o];
      cum_[e][o] = c;
    }
    cum_[e][kOps - 1] = 2.0;  // guard against rounding: the last op catches u close to 1
  }
}

int32_t Search::rl_sample(nb201::Ops& ops) {
  for (int e = 0; e < kEdges; ++e) {
    const double u = rng_.uniform();
    int o = 0;
    while (u >= cum_[e][o]) ++o;
    ops[e] = static_cast<uint8_t>(o);
  }
  return nb201::encode(ops);
}

void Search::rl_baseline_update(double r) {
  ema_num_ = cfg_.rl_momentum * ema_num_ + (1.0 - cfg_.rl_momentum) * r;
  ema_den_ = cfg_.rl_momentum * ema_den_ + (1.0 - cfg_.rl_momentum);
}

void Search::rl_update(const nb201::Ops* cells, const double* adv, size_t n) {
  double g[kEdges][kOps];
  const double inv = 1.0 / static_cast<double>(n);
  double a = 0.0;
  for (size_t i = 0; i < n; ++i) a += adv[i];
  for (int e = 0; e < kEdges; ++e)
    for (int o = 0; o < kOps; ++o) g[e][o] = a * prob_[e][o] * inv;  // the -p_e(o) part
  for (size_t i = 0; i < n; ++i)
    for (int e = 0; e < kEdges; ++e) g[e][cells[i][e]] -= adv[i] * inv;  // the 1[o = op_e] part
  // Adam (Kingma & Ba 2015), bias corrections from running powers of beta1, beta2
  constexpr double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  adam_p1_ *= b1;
  adam_p2_ *= b2;
  const double s1 = cfg_.rl_lr / (1.0 - adam_p1_);
  const double r2 = 1.0 / (1.0 - adam_p2_);
  for (int e = 0; e < kEdges; ++e)
    for (int o = 0; o < kOps; ++o) {
      m_[e][o] = b1 * m_[e][o] + (1.0 - b1) * g[e][o];
      v_[e][o] = b2 * v_[e][o] + (1.0 - b2) * g[e][o] * g[e][o];
      theta_[e][o] -= s1 * m_[e][o] / (std::sqrt(v_[e][o] * r2) + eps);
    }
  rl_refresh_probs();
}

std::vector<double> Search::policy() const {
  if (cfg_.algo != Algo::kReinforce) return {};
  std::vector<double> out;
  for (int e = 0; e < kEdges; ++e)
    for (int o = 0; o < kOps; ++o) out.push_back(prob_[e][o]);
  return out;
}

bool Search::step_reinforce() {
  const Rng saved = rng_;
  if (phase_ == Phase::kWarmup) {
    const int64_t done = res_.proposals;  // during warmup every proposal is a warmup sample
    const int64_t n = std::min(cfg_.rl_warmup_batch, cfg_.warmup - done);
    std::vector<nb201::Ops> cells(n);
    scratch_.resize(n);
    for (int64_t i = 0; i < n; ++i) scratch_[i] = rl_sample(cells[i]);
    if (!have_scores(scratch_.data(), scratch_.size())) {
      rng_ = saved;
      return false;
    }
    for (int64_t i = 0; i < n; ++i) {  // insert the batch into the sorted history
      const double k = rank_key(score(scratch_[i]));
      warm_seen_.insert(std::upper_bound(warm_seen_.begin(), warm_seen_.end(), k), k);
    }
    std::vector<double> adv(n);
    const double total = static_cast<double>(warm_seen_.size());
    for (int64_t i = 0; i < n; ++i) {
      const double k = rank_key(score(scratch_[i]));
      const auto lo = std::lower_bound(warm_seen_.begin(), warm_seen_.end(), k);
      const auto hi = std::upper_bound(lo, warm_seen_.end(), k);
      const double below = static_cast<double>(lo - warm_seen_.begin());
      const double equal = static_cast<double>(hi - lo);
      const double r = 100.0 * (below + 0.5 * equal) / total;
      rl_baseline_update(r);
      adv[i] = r - rl_baseline();
    }
    rl_update(cells.data(), adv.data(), cells.size());
    res_.proposals += n;
    if (res_.proposals >= cfg_.warmup) {
      phase_ = Phase::kMain;
      ema_num_ = ema_den_ = 0.0;
      adam_p1_ = adam_p2_ = 1.0;
      for (int e = 0; e < kEdges; ++e)
        for (int o = 0; o < kOps; ++o) m_[e][o] = v_[e][o] = 0.0;
      warm_seen_.clear();
      warm_seen_.shrink_to_fit();
    }
    ++res_.steps;
    return true;
  }
  nb201::Ops ops{};
  int32_t code;
  if (cfg_.move > 0) {
    const int64_t m = cfg_.move;
    scratch_.resize(m);
    for (int64_t i = 0; i < m; ++i) scratch_[i] = rl_sample(ops);  // the chosen cell is re-decoded
    if (!have_scores(scratch_.data(), scratch_.size())) {
      rng_ = saved;
      return false;
    }
    res_.proposals += m;
    const size_t n = prefer_untrained(scratch_.data(), scratch_.size());
    code = best_by_score(scratch_.data(), n);
    ops = nb201::decode(code);
  } else {
    code = rl_sample(ops);
    ++res_.proposals;
  }
  const double r = train(code);
  rl_baseline_update(r);
  const double adv = r - rl_baseline();
  rl_update(&ops, &adv, 1);
  ++res_.steps;
  return true;
}

// ------------------------------------------------------------------------------------ BP
// Predictor-based search (after BRP-NAS): in rounds of K = bp_batch cells, fit the ranking
// predictor (predictor.hpp) on all cells trained so far (validation accuracy), rank every
// untrained cell of the space, and train the K best predicted. The first round, before any
// accuracy is known, trains K random cells. +warmup(W): pre-train the predictor on the proxy
// ranking of W random cells (the paper: 256), so the first round already trains the top
// predicted cells; later refits fine-tune those weights. +move(M): each round proposes
// max(M, K) cells (top predicted; random in a first round without warmup), scores them, and
// trains the K with the best proxy scores.
bool Search::step_predictor() {
  const Rng saved = rng_;
  const int64_t K = cfg_.bp_batch;
  if (phase_ == Phase::kWarmup) {
    if (!draw_warmup(saved)) return false;
    std::vector<double> y(order_.size());
    for (size_t i = 0; i < order_.size(); ++i) y[i] = score(order_[i]);
    pred_->fit(order_, y, cfg_.bp_warmup_iters, cfg_.bp_pairs, rng_);
    bp_fitted_ = true;
    phase_ = Phase::kFit;
    ++res_.steps;
    return true;
  }
  const int64_t want = std::max(K, cfg_.move);
  if (phase_ == Phase::kFit) {
    if (!res_.trained.empty()) {
      pred_->fit(res_.trained, res_.val, cfg_.bp_iters, cfg_.bp_pairs, rng_);
      bp_fitted_ = true;
    }
    if (!bp_fitted_) {
      sample_untrained_distinct(want, cand_);
    } else {
      std::vector<float> f;
      pred_->predict_all(f);
      std::vector<std::pair<float, int32_t>> key;
      key.reserve(kSpaceSize);
      for (int32_t c = 0; c < kSpaceSize; ++c)
        if (!is_trained(c)) key.emplace_back(std::isnan(f[c]) ? -INFINITY : f[c], c);
      const size_t n = std::min(static_cast<size_t>(want), key.size());
      auto cmp = [](const auto& a, const auto& b) {
        return a.first != b.first ? a.first > b.first : a.second < b.second;
      };
      std::partial_sort(key.begin(), key.begin() + n, key.end(), cmp);
      cand_.resize(n);
      for (size_t i = 0; i < n; ++i) cand_[i] = key[i].second;
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
    sort_by_score(cand_);
  }
  const size_t n = std::min(static_cast<size_t>(K), cand_.size());
  for (size_t i = 0; i < n && budget_left(); ++i) train(cand_[i]);
  phase_ = Phase::kFit;
  ++res_.steps;
  return true;
}

// ----------------------------------------------------------------------------------- bench
BenchResult bench(const Config& cfg, std::shared_ptr<const GroundTruth> gt,
                  std::shared_ptr<const std::vector<double>> scores, int64_t repeats) {
  validate(cfg);
  if (repeats < 1)
    throw std::invalid_argument("bench repeats must be >= 1, got " + str(repeats));
  if (!scores) throw std::invalid_argument("bench needs a complete score table");
  BenchResult out;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t r = 0; r < repeats; ++r) {
    Config c = cfg;
    c.seed = cfg.seed + static_cast<uint64_t>(r);
    Search s(c, gt, scores);
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
