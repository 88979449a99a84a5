// Plain C++ launchers of the CUDA kernels (no torch, no pybind11 types). Every pointer is a
// device pointer; `stream` is a cudaStream_t passed as an integer. Each returns a cudaError_t
// as int (0 = success) so the binding layer can raise a Python error with its message.
#pragma once
#include <cstdint>

namespace zc::cuda {

const char* error_string(int err);
int device_count(int* count);
int runtime_version(int* version);

// Counter-based weight initialiser (see hash.hpp): out[off[s]:off[s+1]] = U[-1,1) * bound[s].
int fill_uniform(float* out, const int64_t* offsets, const uint32_t* arch, const uint32_t* slot,
                 const float* bound, int64_t nseg, uint64_t seed, uintptr_t stream);

}  // namespace zc::cuda
