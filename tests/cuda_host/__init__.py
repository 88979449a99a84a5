"""Host-side replay of the CUDA kernels' work decomposition (see partition_test.cpp)."""
