"""Triton kernels of zcfast (installed as zcfast.kernels)."""
