// A small learned accuracy *ranker* for NB201 cells, trained in plain C++ (no torch).
//
// Model (an MLP on the one-hot cell encoding: 6 edges x 5 ops = 30 inputs, exactly 6 ones):
//   h1 = relu(b1 + sum_e E[e, op_e])   (H)      -- the first layer of a one-hot MLP is a sum of rows
//   h2 = relu(W2 h1 + b2)              (H)
//   f  = w3 . h2 + b3                  (scalar score; only its order matters)
// Training is pairwise, in the spirit of BRP-NAS's *binary relation* predictor (Dudziak et al.,
// NeurIPS 2020): for a pair (a, b) with y_a > y_b the model gives P(a beats b) = sigmoid(f_a - f_b)
// and minimises the logistic loss softplus(-(f_a - f_b)) (RankNet, Burges et al. 2005). Because
// only orders are learned, the same model can be pre-trained on zero-cost scores of any scale
// (synflow spans 1e30..1e61) and fine-tuned on accuracies. Optimiser: AdamW (Loshchilov & Hutter
// 2019). float32 throughout: a ranking of 15,625 cells needs no more precision.
#pragma once
#include <cstdint>
#include <vector>

#include "rng.hpp"

namespace zc::search {

class RankPredictor {
 public:
  RankPredictor(int hidden, double lr, double weight_decay, Rng& rng);

  // f of one cell code / of all 15,625 codes (out[code]).
  float predict(int32_t code) const;
  void predict_all(std::vector<float>& out) const;

  // `iters` AdamW steps, each on `pairs` random pairs (i, j) of the given points with y_i != y_j
  // (NaN targets rank below every number). Returns the mean loss of the last step (NaN when no
  // pair has distinct targets).
  double fit(const std::vector<int32_t>& codes, const std::vector<double>& y, int64_t iters,
             int64_t pairs, Rng& rng);

  // Fraction of distinct-target pairs ordered correctly (for tests and diagnostics).
  double pair_accuracy(const std::vector<int32_t>& codes, const std::vector<double>& y) const;

  int hidden() const { return h_; }

 private:
  // forward of one cell; fills h1/h2 (size H) and returns f
  float forward(int32_t code, float* h1, float* h2) const;
  // accumulates d f / d params * g into grad_
  void backward(int32_t code, const float* h1, const float* h2, float g);

  void refresh_transpose();  // w2t_ = W2^T (the forward pass runs on columns)

  int h_;
  float lr_, wd_;
  // flat parameter layout: E (6*5*H), b1 (H), W2 (H*H, row-major [out][in]), b2 (H), w3 (H), b3 (1)
  size_t oE_, ob1_, oW2_, ob2_, ow3_, ob3_, n_;
  std::vector<float> p_, grad_, m_, v_;
  std::vector<float> w2t_;  // W2 transposed ([in][out]), refreshed after every update
  int64_t t_ = 0;
};

}  // namespace zc::search
