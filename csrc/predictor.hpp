// A small learned accuracy *ranker* over any space's predictor encoding, trained in plain C++
// (no torch).
//
// Model (an MLP on the space's encoding x, space.hpp `encode`: F floats, mostly zero):
//   h1 = relu(b1 + sum_i x_i E[i])     (H)      -- the first layer, summed over non-zero x_i in order
//   h2 = relu(W2 h1 + b2)              (H)
//   f  = w3 . h2 + b3                  (scalar score; only its order matters)
// For NB201 x is the one-hot cell (6 edges x 5 ops, exactly 6 ones), so the first layer is a sum
// of 6 rows of E. Training is pairwise, in the spirit of BRP-NAS's *binary relation* predictor
// (Dudziak et al., NeurIPS 2020): for a pair (a, b) with y_a > y_b the model gives
// P(a beats b) = sigmoid(f_a - f_b) and minimises the logistic loss softplus(-(f_a - f_b))
// (RankNet, Burges et al. 2005). Because only orders are learned, the same model can be
// pre-trained on zero-cost scores of any scale (synflow spans 1e30..1e61) and fine-tuned on
// accuracies. Optimiser: AdamW (Loshchilov & Hutter 2019). float32 throughout: a ranking of the
// cells of a space needs no more precision.
#pragma once
#include <cstdint>
#include <vector>

#include "rng.hpp"
#include "space.hpp"

namespace zc::search {

class RankPredictor {
 public:
  RankPredictor(space::SpacePtr space, int hidden, double lr, double weight_decay, Rng& rng);

  // f of one architecture / of many (out[i] = f(codes[i])).
  float predict(space::Code code) const;
  void predict_many(const std::vector<space::Code>& codes, std::vector<float>& out) const;

  // `iters` AdamW steps, each on `pairs` random pairs (i, j) of the given points with y_i != y_j
  // (NaN targets rank below every number). Returns the mean loss of the last step (NaN when no
  // pair has distinct targets).
  double fit(const std::vector<space::Code>& codes, const std::vector<double>& y, int64_t iters,
             int64_t pairs, Rng& rng);

  // Fraction of distinct-target pairs ordered correctly (for tests and diagnostics).
  double pair_accuracy(const std::vector<space::Code>& codes, const std::vector<double>& y) const;

  int hidden() const { return h_; }

 private:
  // the non-zero features of a code: (index, value) pairs in index order
  void sparse(space::Code code, std::vector<int>& idx, std::vector<float>& val) const;
  // forward of one architecture given its sparse features; fills h1/h2 (size H) and returns f
  float forward(const std::vector<int>& idx, const std::vector<float>& val, float* h1,
                float* h2) const;
  // accumulates d f / d params * g into grad_
  void backward(const std::vector<int>& idx, const std::vector<float>& val, const float* h1,
                const float* h2, float g);

  void refresh_transpose();  // w2t_ = W2^T (the forward pass runs on columns)

  space::SpacePtr space_;
  int f_;  // features
  int h_;
  float lr_, wd_;
  // flat parameter layout: E (F*H), b1 (H), W2 (H*H, row-major [out][in]), b2 (H), w3 (H), b3 (1)
  size_t oE_, ob1_, oW2_, ob2_, ow3_, ob3_, n_;
  std::vector<float> p_, grad_, m_, v_;
  std::vector<float> w2t_;  // W2 transposed ([in][out]), refreshed after every update
  int64_t t_ = 0;
  mutable std::vector<float> dense_;  // scratch for encode()
};

}  // namespace zc::search
