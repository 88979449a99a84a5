#include "predictor.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

namespace zc::search {

namespace {

// NaN ranks below every number (the driver's rule for proxy scores).
inline double rank_key(double y) {
  return std::isnan(y) ? -std::numeric_limits<double>::infinity() : y;
}
}  // namespace

RankPredictor::RankPredictor(space::SpacePtr space, int hidden, double lr, double weight_decay,
                             Rng& rng)
    : space_(std::move(space)), h_(hidden), lr_(static_cast<float>(lr)),
      wd_(static_cast<float>(weight_decay)) {
  if (!space_) throw std::invalid_argument("predictor needs a space");
  if (hidden < 1)
    throw std::invalid_argument("predictor hidden size must be >= 1, got " + std::to_string(hidden));
  f_ = space_->features();
  const size_t H = static_cast<size_t>(hidden), F = static_cast<size_t>(f_);
  oE_ = 0;
  ob1_ = oE_ + F * H;
  oW2_ = ob1_ + H;
  ob2_ = oW2_ + H * H;
  ow3_ = ob2_ + H;
  ob3_ = ow3_ + H;
  n_ = ob3_ + 1;
  p_.assign(n_, 0.0f);
  grad_.assign(n_, 0.0f);
  m_.assign(n_, 0.0f);
  v_.assign(n_, 0.0f);
  dense_.assign(F, 0.0f);
  // PyTorch's default Linear init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = active inputs
  // (NB201: 6 one-hot ones for the first layer); biases start at 0.
  auto fill = [&](size_t off, size_t n, double bound) {
    for (size_t i = 0; i < n; ++i)
      p_[off + i] = static_cast<float>((2.0 * rng.uniform() - 1.0) * bound);
  };
  fill(oE_, F * H, 1.0 / std::sqrt(space_->active_features()));
  fill(oW2_, H * H, 1.0 / std::sqrt(static_cast<double>(H)));
  fill(ow3_, H, 1.0 / std::sqrt(static_cast<double>(H)));
  refresh_transpose();
}

void RankPredictor::sparse(space::Code code, std::vector<int>& idx, std::vector<float>& val) const {
  space_->check(code);
  space_->encode(code, dense_.data());
  idx.clear();
  val.clear();
  for (int i = 0; i < f_; ++i)
    if (dense_[i] != 0.0f) {
      idx.push_back(i);
      val.push_back(dense_[i]);
    }
}

void RankPredictor::refresh_transpose() {
  const size_t H = static_cast<size_t>(h_);
  w2t_.resize(H * H);
  const float* W2 = p_.data() + oW2_;
  for (size_t o = 0; o < H; ++o)
    for (size_t k = 0; k < H; ++k) w2t_[k * H + o] = W2[o * H + k];
}

float RankPredictor::forward(const std::vector<int>& idx, const std::vector<float>& val,
                             float* h1, float* h2) const {
  const int H = h_;
  const float* E = p_.data() + oE_;
  const float* b1 = p_.data() + ob1_;
  const float* b2 = p_.data() + ob2_;
  const float* w3 = p_.data() + ow3_;
  for (int k = 0; k < H; ++k) h1[k] = b1[k];
  for (size_t j = 0; j < idx.size(); ++j) {
    const float* row = E + static_cast<size_t>(idx[j]) * H;
    const float x = val[j];
    for (int k = 0; k < H; ++k) h1[k] += x * row[k];
  }
  for (int k = 0; k < H; ++k) h1[k] = h1[k] > 0.0f ? h1[k] : 0.0f;
  // h2 = W2 h1 + b2 as a sum of columns (axpy over W2's transpose): the inner loop is element-wise,
  // so the compiler vectorises it without reassociating a reduction; zero units are skipped.
  for (int o = 0; o < H; ++o) h2[o] = b2[o];
  for (int k = 0; k < H; ++k) {
    const float a = h1[k];
    if (a == 0.0f) continue;
    const float* col = w2t_.data() + static_cast<size_t>(k) * H;
    for (int o = 0; o < H; ++o) h2[o] += col[o] * a;
  }
  float f = p_[ob3_];
  for (int o = 0; o < H; ++o) {
    h2[o] = h2[o] > 0.0f ? h2[o] : 0.0f;
    f += w3[o] * h2[o];
  }
  return f;
}

void RankPredictor::backward(const std::vector<int>& idx, const std::vector<float>& val,
                             const float* h1, const float* h2, float g) {
  const int H = h_;
  const float* W2 = p_.data() + oW2_;
  const float* w3 = p_.data() + ow3_;
  float* gE = grad_.data() + oE_;
  float* gb1 = grad_.data() + ob1_;
  float* gW2 = grad_.data() + oW2_;
  float* gb2 = grad_.data() + ob2_;
  float* gw3 = grad_.data() + ow3_;
  grad_[ob3_] += g;
  float dh1[512];
  std::vector<float> big;
  float* d1 = dh1;
  if (H > 512) {
    big.assign(H, 0.0f);
    d1 = big.data();
  } else {
    std::fill(dh1, dh1 + H, 0.0f);
  }
  for (int o = 0; o < H; ++o) {
    gw3[o] += g * h2[o];
    if (h2[o] <= 0.0f) continue;
    const float d2 = g * w3[o];
    gb2[o] += d2;
    float* gw = gW2 + static_cast<size_t>(o) * H;
    const float* w = W2 + static_cast<size_t>(o) * H;
    for (int k = 0; k < H; ++k) {
      gw[k] += d2 * h1[k];
      d1[k] += d2 * w[k];
    }
  }
  for (int k = 0; k < H; ++k)
    if (h1[k] <= 0.0f) d1[k] = 0.0f;
  for (int k = 0; k < H; ++k) gb1[k] += d1[k];
  for (size_t j = 0; j < idx.size(); ++j) {
    float* row = gE + static_cast<size_t>(idx[j]) * H;
    const float x = val[j];
    for (int k = 0; k < H; ++k) row[k] += x * d1[k];
  }
}

float RankPredictor::predict(space::Code code) const {
  std::vector<float> h1(h_), h2(h_);
  std::vector<int> idx;
  std::vector<float> val;
  sparse(code, idx, val);
  return forward(idx, val, h1.data(), h2.data());
}

void RankPredictor::predict_many(const std::vector<space::Code>& codes,
                                 std::vector<float>& out) const {
  out.resize(codes.size());
  std::vector<float> h1(h_), h2(h_);
  std::vector<int> idx;
  std::vector<float> val;
  for (size_t i = 0; i < codes.size(); ++i) {
    sparse(codes[i], idx, val);
    out[i] = forward(idx, val, h1.data(), h2.data());
  }
}

double RankPredictor::fit(const std::vector<space::Code>& codes, const std::vector<double>& y,
                          int64_t iters, int64_t pairs, Rng& rng) {
  if (codes.size() != y.size())
    throw std::invalid_argument("predictor fit: " + std::to_string(codes.size()) + " codes but " +
                                std::to_string(y.size()) + " targets");
  const size_t n = codes.size();
  std::vector<std::vector<int>> sidx(n);
  std::vector<std::vector<float>> sval(n);
  for (size_t i = 0; i < n; ++i) sparse(codes[i], sidx[i], sval[i]);
  std::vector<double> key(n);
  for (size_t i = 0; i < n; ++i) key[i] = rank_key(y[i]);
  bool any = false;
  for (size_t i = 1; i < n && !any; ++i) any = key[i] != key[0];
  if (!any || iters <= 0 || pairs <= 0) return std::nan("");

  const int H = h_;
  std::vector<float> ha1(H), ha2(H), hb1(H), hb2(H);
  const float b1c = 0.9f, b2c = 0.999f, eps = 1e-8f;
  double loss = 0.0;
  for (int64_t it = 0; it < iters; ++it) {
    std::fill(grad_.begin(), grad_.end(), 0.0f);
    loss = 0.0;
    int64_t used = 0;
    for (int64_t q = 0; q < pairs; ++q) {
      size_t i = 0, j = 0;
      bool found = false;
      for (int tries = 0; tries < 16 && !found; ++tries) {
        i = static_cast<size_t>(rng.below(n));
        j = static_cast<size_t>(rng.below(n));
        found = key[i] != key[j];
      }
      if (!found) continue;
      if (key[i] < key[j]) std::swap(i, j);  // i is the better one
      const float fa = forward(sidx[i], sval[i], ha1.data(), ha2.data());
      const float fb = forward(sidx[j], sval[j], hb1.data(), hb2.data());
      const double d = static_cast<double>(fa) - fb;
      // softplus(-d) computed stably; d loss / d d = -sigmoid(-d)
      loss += std::max(-d, 0.0) + std::log1p(std::exp(-std::fabs(d)));
      const float g = static_cast<float>(-1.0 / (1.0 + std::exp(d)));
      backward(sidx[i], sval[i], ha1.data(), ha2.data(), g);
      backward(sidx[j], sval[j], hb1.data(), hb2.data(), -g);
      ++used;
    }
    if (used == 0) continue;
    const float inv = 1.0f / static_cast<float>(used);
    ++t_;
    const float c1 = 1.0f - std::pow(b1c, static_cast<float>(t_));
    const float c2 = 1.0f - std::pow(b2c, static_cast<float>(t_));
    for (size_t k = 0; k < n_; ++k) {
      const float gk = grad_[k] * inv;
      m_[k] = b1c * m_[k] + (1.0f - b1c) * gk;
      v_[k] = b2c * v_[k] + (1.0f - b2c) * gk * gk;
      p_[k] -= lr_ * (wd_ * p_[k] + (m_[k] / c1) / (std::sqrt(v_[k] / c2) + eps));
    }
    refresh_transpose();
    loss /= static_cast<double>(used);
  }
  return loss;
}

double RankPredictor::pair_accuracy(const std::vector<space::Code>& codes,
                                    const std::vector<double>& y) const {
  if (codes.size() != y.size())
    throw std::invalid_argument("pair_accuracy: " + std::to_string(codes.size()) + " codes but " +
                                std::to_string(y.size()) + " targets");
  std::vector<float> f;
  predict_many(codes, f);
  int64_t good = 0, total = 0;
  for (size_t i = 0; i < codes.size(); ++i)
    for (size_t j = i + 1; j < codes.size(); ++j) {
      const double a = rank_key(y[i]), b = rank_key(y[j]);
      if (a == b) continue;
      ++total;
      if ((a > b) == (f[i] > f[j])) ++good;
    }
  return total ? static_cast<double>(good) / static_cast<double>(total) : std::nan("");
}

}  // namespace zc::search
