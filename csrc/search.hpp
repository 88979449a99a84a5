// Zero-cost NAS search driver over any search space (torch-free C++17).
//
// Simulates the searches of Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS" (ICLR 2021),
// section 5: random search (RAND), aging/regularised evolution (AE, Real et al. 2019), REINFORCE
// (RL, Williams 1992 as used by NAS-Bench-201) and a predictor-based search (BP, after BRP-NAS,
// Dudziak et al. 2020), each optionally with a zero-cost *warmup* (pre-selection / pre-training on
// proxy scores) and a zero-cost *move* proposal (the proxy picks the candidate to train). The
// space comes in through space.hpp; nothing here knows a particular space.
//
// "Training" a cell is a query of the training oracle, a look-up in the ground-truth table the
// driver holds (GroundTruth): validation accuracy drives selection, test accuracy is reported. Every
// query costs one trained model of the budget, whether or not the cell was queried before (the rule
// benchmark simulators use: the algorithm asked for a training run, so it pays for one). What stays
// free is reading results the algorithm already holds without querying again: the population's
// accuracies in AE's tournament, and the check "was this cell trained already?" that lets a move
// proposal prefer untrained candidates (docs/search.md, "Budget accounting").
//
// The ground truth decides the *universe* the search runs in. When it covers every network of the
// space (NB201's 15,625 cells, NB101's official file) the search uses the space's own sampling,
// mutation and neighbours. When it covers a subset (a *pool*, e.g. the 292 distinct NB101 cells of a
// bundled sample), every proposal is a pool member: sampling is uniform over the pool, the
// neighbours of a cell are the pool members nearest to it in the predictor encoding, mutation picks
// one of them, and the RL policy is restricted to the pool (docs/spaces.md, "Pools").
//
// A *task* (Task, docs/hardware.md) may add hardware awareness: a feasibility mask (only cells
// within a latency or energy budget may be proposed, scored or trained; the space's own operators
// are used with rejection, and the pool rules only where those cannot produce a feasible cell)
// and a second objective, a cost to minimise next to accuracy (multi-objective mode: every
// selection scalarises the two objectives with a random weight, and the run reports the Pareto
// front of the trained cells and its hypervolume). Without a task nothing changes, bit for bit.
//
// Inside, a cell is a *row* of the ground-truth table. Zero-cost scores arrive through an ask/tell
// protocol: `Search::ask()` runs the algorithm until it needs proxy scores it does not have, rolls
// the current step back (only the RNG may have moved), and returns the distinct rows to score;
// `Search::tell()` stores them and the next `ask()` replays the step, which now finds its scores. A
// search given a complete score table never asks. Higher proxy scores are better; a NaN score ranks
// below every number (never silently replaced).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "predictor.hpp"
#include "rng.hpp"
#include "space.hpp"

namespace zc::search {

using space::Code;
using space::Key;
using space::SpacePtr;

enum class Algo : int { kRandom = 0, kEvolution = 1, kReinforce = 2, kPredictor = 3 };

// "rand" | "ae" | "rl" | "bp" (also "random", "evolution", "reinforce", "predictor");
// std::invalid_argument naming the bad name otherwise.
Algo algo_from_name(const std::string& name);
const char* algo_name(Algo a);

struct Config {
  Algo algo = Algo::kRandom;
  int64_t budget = 300;  // oracle queries (trained models), 1..cells in the universe
  int64_t warmup = 0;    // W: zero-cost warmup size (0 = off), 0..cells in the universe
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
  // Cells the predictor ranks per round: 0 = every untrained cell of the universe; N = N random
  // untrained cells (for universes too large to rank in full every round).
  int64_t bp_candidates = 0;

  // Zero-cost scores with several members (a label-free ensemble, docs/proxies_modern.md): every
  // cell has `score_members` proxy scores (columns 0..m-1), and `ensemble` says how to combine
  // them, as an expression: a column number, or rule(child, child, ...) with rule "logrank"
  // (sum of log(rank / n)), "meanrank" or "vote" (Copeland count of the pairwise majority vote),
  // e.g. "logrank(0,logrank(1,2,3,4),5)". Whenever the search compares cells (a warmup pool,
  // move candidates, the cells seen by RL's warmup) every child is evaluated over exactly those
  // cells and ranked over them (average ranks, NaN lowest). Empty: one member, the raw scores.
  int64_t score_members = 1;
  std::string ensemble;

  // Guard against searches that take steps without querying the oracle forever: stop after this
  // many steps (0 = automatic: max(100,000, 1,000 * budget)); the run is then marked failed.
  int64_t max_steps = 0;
};

// Throws std::invalid_argument naming the first bad value (the checks that need no universe;
// Search's constructor checks the sizes against its universe).
void validate(const Config& c);
// The columns an ensemble expression reads (throws std::invalid_argument naming a bad part).
std::vector<int64_t> ensemble_columns(const std::string& expr);

// A node of a parsed ensemble expression: rule (0 = a score column, 1 logrank, 2 meanrank,
// 3 vote), the column of a leaf, the children of a rule.
struct EnsembleNode {
  int rule = 0;
  int64_t column = 0;
  std::vector<EnsembleNode> children;
};

// The training oracle: validation and test accuracy of the cells of a universe, one row each,
// keyed by the space's key (rows must have distinct keys), shared by many searches.
class GroundTruth {
 public:
  // Checks every code with the space, finiteness of the values and distinct keys.
  GroundTruth(SpacePtr space, std::vector<Code> codes, std::vector<double> val,
              std::vector<double> test);

  const SpacePtr& space() const { return space_; }
  size_t rows() const { return code_.size(); }
  // True when the table covers every network of the space (then searches use the space's own
  // operators); false for a pool.
  bool complete() const { return complete_; }
  int32_t row_of_key(Key k) const;  // -1 when absent
  int32_t row_of_code(Code c) const { return row_of_key(space_->key(c)); }
  Code code(int32_t r) const { return code_[r]; }
  double val(int32_t r) const { return val_[r]; }
  double test(int32_t r) const { return test_[r]; }

 private:
  SpacePtr space_;
  std::vector<Code> code_;
  std::vector<double> val_, test_;
  bool complete_ = false;
  std::vector<int32_t> dense_;                  // key -> row, for dense_keys() spaces
  std::unordered_map<Key, int32_t> map_;        // key -> row otherwise
};

// Hardware awareness of a search (docs/hardware.md); both parts are optional.
struct Task {
  // By ground-truth row: nonzero = the cell is within the constraint and may be trained; empty =
  // every row. Only these rows are ever proposed, scored or trained.
  std::vector<uint8_t> feasible;
  // By ground-truth row: a cost to minimise next to validation accuracy (latency, energy);
  // empty = accuracy alone. Must be finite on every feasible row.
  std::vector<double> cost;
};

// Multi-objective mode: a selection under the weight lambda in [0, 1] maximises the augmented
// Chebyshev scalarisation of ParEGO (Knowles, IEEE TEVC 2006)
//   u = min(lambda a, (1 - lambda) g) + rho (lambda a + (1 - lambda) g),
// a and g in [0, 1] the accuracy and cost goodness of a cell (docs/hardware.md).
constexpr double kChebyshevRho = 0.05;

struct Result {
  std::vector<int32_t> trained;  // ground-truth rows in query order, one per query (repeats kept)
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
  int64_t members = 0;     // cells the search may train (the universe, or its feasible part)

  // Multi-objective mode only (empty otherwise). The validation front after n queries is the set
  // of trained cells that no trained cell dominates in (validation accuracy up, cost down);
  // hv_val_curve[n-1] is its hypervolume with validation accuracy, hv_curve[n-1] the hypervolume
  // of the same cells with their test accuracy (what a user deploying the front gets). Both are
  // normalised: a = (acc - acc_lo) / (acc_hi - acc_lo), g = (cost_hi - cost) / (cost_hi -
  // cost_lo), ranges over the cells the search may train (accuracy: validation and test
  // together), reference point (a, g) = (0, 0); 1 is a cell as accurate as the best and as
  // cheap as the cheapest.
  std::vector<double> hv_curve, hv_val_curve;
  std::vector<int32_t> front;  // the validation front at the end, by cost ascending
  double acc_lo = 0, acc_hi = 0, cost_lo = 0, cost_hi = 0;
};

class Search {
 public:
  // full_scores: optional complete proxy table by ground-truth row (rows x score_members,
  // row-major); without it scores come through ask/tell.
  // task: optional hardware awareness (feasibility mask, second objective).
  Search(const Config& cfg, std::shared_ptr<const GroundTruth> gt,
         std::shared_ptr<const std::vector<double>> full_scores = nullptr,
         std::shared_ptr<const Task> task = nullptr);

  // Runs until the budget is spent, the step guard trips, or proxy scores are missing. Returns
  // the distinct rows to score (empty: the search is finished).
  std::vector<int32_t> ask();
  // Stores proxy scores of n rows (n x score_members values, row-major; any rows, any order;
  // later values overwrite earlier ones).
  void tell(const int32_t* rows, const double* scores, size_t n);
  bool done() const { return done_; }
  // Runs to the end; requires a complete score table (or no need for scores).
  void run();

  const Result& result() const { return res_; }
  const Config& config() const { return cfg_; }
  bool pool() const { return pool_; }
  bool constrained() const { return constrained_; }
  bool multi_objective() const { return mo_; }
  // RL: current probabilities of every decision's categories, concatenated; empty otherwise.
  std::vector<double> policy() const;
  // RL in a pool or under a constraint: the restricted policy q by ground-truth row (0 outside
  // the cells it may train); empty otherwise.
  std::vector<double> pool_probabilities() const;
  // AE: current population (rows, oldest first); empty for other algorithms.
  std::vector<int32_t> population() const;

 private:
  enum class Phase { kWarmup, kWarmTrain, kInit, kMain, kFit };

  bool step();  // one step; false = scores missing (state rolled back, need_ filled)
  bool have_scores(const int32_t* rows, size_t n);
  // Warmup: draws cfg_.warmup distinct cells into order_ and counts them as proposals; false
  // (RNG restored to `saved`, need_ filled) while some of their scores are missing.
  bool draw_warmup(const Rng& saved);
  double score(int32_t row, int64_t member = 0) const;
  // The scores the search compares for these rows: the raw score with one member, else the
  // ensemble over exactly these rows (see Config::ensemble).
  void set_scores(const int32_t* rows, size_t n, std::vector<double>& out) const;
  void eval_node(const EnsembleNode& node, const int32_t* rows, size_t n,
                 std::vector<double>& out) const;
  EnsembleNode ens_;
  double train(int32_t row);  // one oracle query: charges one trained model, always
  bool is_trained(int32_t row) const { return trained_at_[row] >= 0; }
  bool budget_left() const { return res_.queries < cfg_.budget; }
  int64_t untrained() const { return n_members_ - res_.distinct; }
  int64_t universe() const { return static_cast<int64_t>(gt_->rows()); }
  // may this row be trained? (the constraint; every row without one)
  bool allowed(int32_t r) const { return ok_.empty() || ok_[r] != 0; }
  // restricted to a member list (a pool, or a constraint): pool operators, restricted RL
  bool restricted() const { return pool_ || constrained_; }

  // ---- the universe's operators (space operators, or their pool counterparts)
  int32_t row_of(Code c) const;  // row of a code the space produced; throws if not in the table
  int32_t sample_row();
  std::vector<int32_t> sample_distinct_rows(int64_t n);
  int32_t mutate_row(int32_t r);
  void neighbour_rows(int32_t r, std::vector<int32_t>& out);
  // The members nearest to r in the predictor encoding (the pool rule; under a constraint the
  // fallback where the space's own moves reach no feasible cell).
  const std::vector<int32_t>& pool_neighbours(int32_t r);

  int32_t sample_untrained();
  // Draws min(m, untrained) distinct untrained cells into out.
  void sample_untrained_distinct(int64_t m, std::vector<int32_t>& out);
  // Sorts rows by proxy score, best first (NaN last, ties by code).
  void sort_by_score(std::vector<int32_t>& rows) const;
  int32_t best_by_score(const int32_t* rows, size_t n) const;
  // Single objective: sort_by_score / best_by_score. Two objectives: the scalarised selections
  // (mo_order with `picks` picks / mo_best under lam_) on the proxy scores and the cost.
  void order_by_score(std::vector<int32_t>& rows, size_t picks);
  int32_t choose_by_score(const int32_t* rows, size_t n);
  void draw_lambda() {
    if (mo_) lam_ = rng_.uniform();
  }
  // Move proposals prefer cells whose accuracy is not known yet: moves the untrained rows to
  // the front (stable order among them) and returns their count, or n when all are trained
  // (then the best-scored one is queried again, and charged).
  size_t prefer_untrained(int32_t* rows, size_t n) const;

  // ---- multi-objective selection (docs/hardware.md)
  double utility(double a, double g) const;  // the scalarisation under lam_
  // Percentile ranks (mid-ranks / n, NaN lowest) of v among themselves.
  static void percentiles(const double* v, size_t n, std::vector<double>& out);
  // Index (into rows) maximising the utility of (percentile of acc, percentile of -cost) among
  // these rows, under lam_; the first one on ties.
  size_t mo_best(const int32_t* rows, size_t n, const double* acc);
  // Reorders rows so that its first `picks` entries are successive mo_best choices, each under
  // a fresh lambda, percentiles taken once over all rows.
  void mo_order(std::vector<int32_t>& rows, const std::vector<double>& acc, size_t picks);
  // Percentile of x in a sorted list (mid-rank of its ties).
  static double percentile_in(const std::vector<double>& sorted, double x);
  void mo_record(int32_t row);  // after a query: the front and the hypervolume curves
  double hypervolume(bool test) const;
  double acc_unit(double acc) const;
  double cost_goodness(double cost) const;

  bool step_random();
  bool step_evolution();
  bool step_reinforce();
  bool step_predictor();

  // RL helpers (decisions: one category per policy decision, flat)
  void rl_refresh_probs();
  // Samples a cell from the policy (restricted to the pool in a pool); writes its decisions.
  int32_t rl_sample(uint8_t* decisions);
  // One Adam step on L = -(1/n) sum_i adv_i log p(cells_i).
  void rl_update(const std::vector<uint8_t>& decisions, const double* adv, size_t n);
  void rl_baseline_update(double r);
  double rl_baseline() const { return ema_num_ / ema_den_; }

  Config cfg_;
  std::shared_ptr<const GroundTruth> gt_;
  SpacePtr space_;
  std::shared_ptr<const std::vector<double>> full_;
  Rng rng_;
  Result res_;
  bool done_ = false;
  bool pool_ = false;
  bool constrained_ = false;  // a feasibility mask is in force
  bool mo_ = false;           // a second objective (cost) is in force
  std::vector<uint8_t> ok_;   // by row: may be trained (empty: all)
  std::vector<double> cost_;  // by row: second objective (empty: none)
  // Rows the search may train, in row order, when the search is restricted (a pool or a
  // constraint): the pool operators and the restricted RL policy range over them.
  std::vector<int32_t> members_;
  int64_t n_members_ = 0;
  double lam_ = 0.5;               // MO: scalarisation weight of the current selection
  std::vector<double> mo_val_seen_, mo_cost_seen_;  // MO RL: sorted val / -cost of the queries
  std::vector<double> warm_cost_seen_;              // MO RL warmup: sorted -cost of cells seen
  int64_t max_steps_ = 0;
  Phase phase_ = Phase::kMain;

  std::vector<int32_t> trained_at_;  // row -> position of its first query, -1 if never queried
  std::vector<double> zc_;           // proxy scores told (by row); allocated on first tell
  std::vector<uint8_t> known_;
  std::vector<uint8_t> used_;        // scores consumed (for res_.scores_used)
  std::vector<int32_t> need_;
  std::vector<uint32_t> mark_;       // scratch stamps for distinct sampling
  uint32_t stamp_ = 0;
  void next_stamp();  // a fresh stamp value for mark_ (cleared on wrap-around)

  std::vector<int32_t> order_;  // warmup: cells to train, best first
  size_t order_pos_ = 0;
  std::vector<int32_t> scratch_;
  std::vector<Code> codes_;     // scratch for space operators
  std::vector<int32_t> scratch_nb_;  // constrained mutation: the feasible neighbours
  bool space_feasible_nb_ = false;  // neighbour_rows: found feasible cells among the space's moves
  std::vector<std::vector<int32_t>> pool_nb_;  // pool: neighbours of each row (lazily filled)
  std::vector<uint8_t> pool_nb_done_;

  // AE: ring buffer of (row, val)
  std::vector<int32_t> pop_row_;
  std::vector<double> pop_val_;
  size_t pop_oldest_ = 0;

  // RL: logits, Adam moments, cached softmax and cumulative sums (flat over decisions x
  // categories, decision d at offset dec_off_[d]), moving-average baseline (bias-corrected EMA)
  std::vector<int> dec_size_, dec_off_;
  size_t n_dec_ = 0, n_logits_ = 0;
  std::vector<double> theta_, m_, v_, cum_, prob_;
  std::vector<double> expect_;  // E[1[category]] under the (restricted) policy
  // restricted (pool or constraint): decisions of every member (members x n_dec_) and the
  // cumulative restricted probabilities over members
  std::vector<uint8_t> pool_dec_;
  std::vector<double> pool_cum_;
  std::vector<double> rl_grad_;   // scratch: gradient of one update
  std::vector<uint8_t> rl_dec_;    // scratch: decisions of the trained cell
  double adam_p1_ = 1.0, adam_p2_ = 1.0;  // beta1^t, beta2^t
  double ema_num_ = 0.0, ema_den_ = 0.0;
  std::vector<double> warm_seen_;  // RL+warmup: sorted proxy scores seen (percentile rewards)
  std::vector<int32_t> warm_rows_;  // RL+warmup with an ensemble: the rows seen so far

  // BP
  std::unique_ptr<RankPredictor> pred_;
  std::vector<int32_t> cand_;  // BP: candidates of the current round, best predicted first
  bool bp_fitted_ = false;
};

// Runs `repeats` searches with seeds cfg.seed, cfg.seed + 1, ... against a complete score table,
// timing only the C++ work. Returns totals.
struct BenchResult {
  double seconds = 0;
  int64_t searches = 0, steps = 0, proposals = 0, trained = 0;
};
BenchResult bench(const Config& cfg, std::shared_ptr<const GroundTruth> gt,
                  std::shared_ptr<const std::vector<double>> scores, int64_t repeats,
                  std::shared_ptr<const Task> task = nullptr);

}  // namespace zc::search
