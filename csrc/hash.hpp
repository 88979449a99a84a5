// Counter-based hashing shared by the CPU weight initialiser, the CUDA kernel and (re-typed
// with the same constants) the Triton kernel and the torch reference in zcfast/ops/init.py.
//
// Weights of a candidate are a pure function of (seed, arch code, parameter slot, element index),
// so a candidate gets the same weights whether it is scored alone or packed with 63 others.
#pragma once
#include <cstdint>

#include "hd.hpp"

namespace zc {

// 32-bit integer finaliser ("lowbias32", C. Wellons, hash-prospector): a bijection on uint32
// with low bias; two multiplications, three xor-shifts.
ZC_HD uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

// Stream key of one parameter tensor: (seed, arch code, slot) -> (ka, kb).
struct StreamKey {
  uint32_t ka, kb;
};

ZC_HD StreamKey stream_key(uint64_t seed, uint32_t arch, uint32_t slot) {
  uint32_t s = mix32(static_cast<uint32_t>(seed) ^ 0x9e3779b9U);
  s = mix32(s ^ static_cast<uint32_t>(seed >> 32));
  s = mix32(s ^ arch);
  s = mix32(s ^ slot);
  return StreamKey{s, mix32(s ^ 0x85ebca6bU)};
}

// Element i of a stream -> float in [-1, 1): 24 random bits m, (m * 2^-23) - 1 is exact in fp32,
// so every implementation (C++, CUDA, Triton, torch) produces the identical bit pattern.
ZC_HD float uniform_pm1(StreamKey k, uint32_t i) {
  uint32_t h = mix32(mix32(i ^ k.ka) ^ k.kb);
  return static_cast<float>(h >> 8) * (1.0f / 8388608.0f) - 1.0f;
}

}  // namespace zc
