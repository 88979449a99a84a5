// Zero-cost NAS search driver over NAS-Bench-201 (torch-free C++17).
//
// Simulates the searches of Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS" (ICLR 2021),
// section 5: random search (RAND), aging/regularised evolution (AE, Real et al. 2019), REINFORCE
// (RL, Williams 1992 as used by NAS-Bench-201) and a predictor-based search (BP, after BRP-NAS,
// Dudziak et al. 2020), each optionally with a zero-cost *warmup* (pre-selection / pre-training on
// proxy scores) and a zero-cost *move* proposal (the proxy picks the candidate to train).
//
// "Training" a cell is a query of the training oracle, a look-up in the ground-truth tables the
// driver holds: validation accuracy drives selection, test accuracy is reported. Every query costs
// one trained model of the budget, whether or not the cell was queried before (the rule benchmark
// simulators use: the algorithm asked for a training run, so it pays for one). What stays free is
// reading results the algorithm already holds without querying again: the population's accuracies
// in AE's tournament, and the check "was this cell trained already?" that lets a move proposal
// prefer untrained candidates (docs/search.md, "Budget accounting").
//
// Zero-cost scores arrive through an ask/tell protocol: `Search::ask()` runs the algorithm until it
// needs proxy scores it does not have, rolls the current step back (only the RNG may have moved),
// and returns the distinct cells to score; `Search::tell()` stores them and the next `ask()` replays
// the step, which now finds its scores. A search given a complete score table never asks.
// Higher proxy scores are better; a NaN score ranks below every number (never silently replaced).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nb201.hpp"
#include "predictor.hpp"
#include "rng.hpp"

namespace zc::search {

enum class Algo : int { kRandom = 0, kEvolution = 1, kReinforce = 2, kPredictor = 3 };

// "rand" | "ae" | "rl" | "bp" (also "random", "evolution", "reinforce", "predictor");
// std::invalid_argument naming the bad name otherwise.
Algo algo_from_name(const std::string& name);
const char* algo_name(Algo a);

struct Config {
  Algo algo = Algo::kRandom;
  int64_t budget = 300;  // oracle queries (trained models), 1..15,625
  int64_t warmup = 0;    // W: zero-cost warmup size (0 = off), 0..15,625
  int64_t move = 0;      // M: zero-cost move proposal size (0 = off)
  uint64_t seed = 0;

  // AE (docs/search.md)
  int64_t population = 64;
  int64_t tournament = 10;
  double move_random_prob = 0.25;  // AE+move: probability of a random neighbour instead of the best

  // RL: NAS-Bench-201's REINFORCE defaults (Adam lr 0.01, baseline EMA momentum 0.9)
  double rl_lr = 0.01;
  double rl_momentum = 0.9;
  int64_t rl_warmup_batch = 16;  // cells per policy update while pre-training on proxy rewards

  // BP: pairwise-ranking MLP predictor (see predictor.hpp)
  int64_t bp_batch = 10;            // cells trained per predictor refit
  int64_t bp_hidden = 32;
  int64_t bp_iters = 300;           // Adam steps per refit on the trained cells
  int64_t bp_warmup_iters = 300;    // Adam steps pre-training on the warmup proxy scores
  int64_t bp_pairs = 64;            // pairs per Adam step
  double bp_lr = 3e-3;
  double bp_weight_decay = 5e-4;

  // Guard against searches that take steps without querying the oracle forever: stop after this
  // many steps (0 = automatic: max(100,000, 1,000 * budget)); the run is then marked failed.
  int64_t max_steps = 0;
};

// Throws std::invalid_argument naming the first bad value.
void validate(const Config& c);

// Ground truth by cell code (index = code), shared by many searches.
struct GroundTruth {
  std::vector<double> val;   // selection signal (validation accuracy, %)
  std::vector<double> test;  // reported (test accuracy, %)
  GroundTruth(std::vector<double> v, std::vector<double> t);  // checks sizes and finiteness
};

struct Result {
  std::vector<int32_t> trained;  // cell codes in query order, one per oracle query (repeats kept)
  std::vector<double> val, test;  // their accuracies
  // The headline curve: test_curve[n-1] = test accuracy of the cell with the best validation
  // accuracy among the first n queries (the first one reached on ties): the model a user of the
  // search would deploy after n trained models.
  std::vector<double> test_curve;
  std::vector<double> best_val_curve;     // max validation accuracy among the first n queries
  // Diagnostic only: max *test* accuracy among the first n queries, an oracle no searcher has.
  std::vector<double> oracle_test_curve;
  int64_t queries = 0;     // oracle queries = trained models charged (the budget when complete)
  int64_t distinct = 0;    // distinct cells among them
  int64_t revisits = 0;    // queries of a cell queried before (charged like any other)
  int64_t steps = 0;       // algorithm steps committed
  int64_t proposals = 0;   // candidate cells generated (queried or zero-cost scored)
  int64_t scores_used = 0; // distinct cells whose proxy score the search consumed
  int64_t asks = 0;        // ask() calls that returned cells to score
  bool failed = false;     // the step guard stopped the run before it spent its budget
};

class Search {
 public:
  // full_scores: optional complete proxy table by code (15,625 values); without it scores come
  // through ask/tell.
  Search(const Config& cfg, std::shared_ptr<const GroundTruth> gt,
         std::shared_ptr<const std::vector<double>> full_scores = nullptr);

  // Runs until the budget is spent, the step guard trips, or proxy scores are missing. Returns
  // the distinct codes to score (empty: the search is finished).
  std::vector<int32_t> ask();
  // Stores proxy scores (any cells, any order; later values overwrite earlier ones).
  void tell(const int32_t* codes, const double* scores, size_t n);
  bool done() const { return done_; }
  // Runs to the end; requires a complete score table (or no need for scores).
  void run();

  const Result& result() const { return res_; }
  const Config& config() const { return cfg_; }
  // RL: current policy probabilities (6 x 5, row-major); empty for other algorithms.
  std::vector<double> policy() const;
  // AE: current population (codes, oldest first); empty for other algorithms.
  std::vector<int32_t> population() const;

 private:
  enum class Phase { kWarmup, kWarmTrain, kInit, kMain, kFit };

  bool step();  // one step; false = scores missing (state rolled back, need_ filled)
  bool have_scores(const int32_t* codes, size_t n);
  // Warmup: draws cfg_.warmup distinct cells into order_ and counts them as proposals; false
  // (RNG restored to `saved`, need_ filled) while some of their scores are missing.
  bool draw_warmup(const Rng& saved);
  double score(int32_t code) const;
  double train(int32_t code);  // one oracle query: charges one trained model, always
  bool is_trained(int32_t code) const { return trained_at_[code] >= 0; }
  bool budget_left() const { return res_.queries < cfg_.budget; }
  int64_t untrained() const { return nb201::kSpaceSize - res_.distinct; }
  int32_t sample_untrained();
  // Draws min(m, untrained) distinct untrained cells into out.
  void sample_untrained_distinct(int64_t m, std::vector<int32_t>& out);
  std::vector<int32_t> sample_distinct(int64_t n);  // uniform without replacement
  // Sorts codes by proxy score, best first (NaN last, ties by code).
  void sort_by_score(std::vector<int32_t>& codes) const;
  int32_t best_by_score(const int32_t* codes, size_t n) const;
  // Move proposals prefer cells whose accuracy is not known yet: moves the untrained codes to
  // the front (stable order among them) and returns their count, or n when all are trained
  // (then the best-scored one is queried again, and charged).
  size_t prefer_untrained(int32_t* codes, size_t n) const;

  bool step_random();
  bool step_evolution();
  bool step_reinforce();
  bool step_predictor();

  // RL helpers
  void rl_refresh_probs();
  int32_t rl_sample(nb201::Ops& ops);
  // One Adam step on L = -(1/n) sum_i adv_i log p(cells_i).
  void rl_update(const nb201::Ops* cells, const double* adv, size_t n);
  void rl_baseline_update(double r);
  double rl_baseline() const { return ema_num_ / ema_den_; }

  Config cfg_;
  std::shared_ptr<const GroundTruth> gt_;
  std::shared_ptr<const std::vector<double>> full_;
  Rng rng_;
  Result res_;
  bool done_ = false;
  int64_t max_steps_ = 0;
  Phase phase_ = Phase::kMain;

  std::vector<int32_t> trained_at_;  // code -> position of its first query, -1 if never queried
  std::vector<double> zc_;           // proxy scores told (by code); allocated on first tell
  std::vector<uint8_t> known_;
  std::vector<uint8_t> used_;        // scores consumed (for res_.scores_used)
  std::vector<int32_t> need_;
  std::vector<uint32_t> mark_;       // scratch stamps for distinct sampling
  uint32_t stamp_ = 0;
  void next_stamp();  // a fresh stamp value for mark_ (cleared on wrap-around)

  std::vector<int32_t> order_;  // warmup: cells to train, best first
  size_t order_pos_ = 0;
  std::vector<int32_t> scratch_;

  // AE: ring buffer of (code, val)
  std::vector<int32_t> pop_code_;
  std::vector<double> pop_val_;
  size_t pop_oldest_ = 0;

  // RL: logits, Adam moments, cached softmax, moving-average baseline (bias-corrected EMA)
  double theta_[nb201::kEdges][nb201::kOps] = {};
  double m_[nb201::kEdges][nb201::kOps] = {};
  double v_[nb201::kEdges][nb201::kOps] = {};
  double cum_[nb201::kEdges][nb201::kOps] = {};
  double prob_[nb201::kEdges][nb201::kOps] = {};
  double adam_p1_ = 1.0, adam_p2_ = 1.0;  // beta1^t, beta2^t
  double ema_num_ = 0.0, ema_den_ = 0.0;
  std::vector<double> warm_seen_;  // RL+warmup: sorted proxy scores seen (percentile rewards)

  // BP
  std::unique_ptr<RankPredictor> pred_;
  std::vector<int32_t> cand_;  // BP: candidates of the current round, best predicted first
  size_t cand_pos_ = 0;
  bool bp_fitted_ = false;
};

// Runs `repeats` searches with seeds cfg.seed, cfg.seed + 1, ... against a complete score table,
// timing only the C++ work. Returns totals.
struct BenchResult {
  double seconds = 0;
  int64_t searches = 0, steps = 0, proposals = 0, trained = 0;
};
BenchResult bench(const Config& cfg, std::shared_ptr<const GroundTruth> gt,
                  std::shared_ptr<const std::vector<double>> scores, int64_t repeats);

}  // namespace zc::search
