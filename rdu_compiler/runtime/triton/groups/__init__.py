"""Fused groups of rdu kernels and the Triton kernel each group becomes: one generator per
module (`rows`, `matmul`, `loop_reduce`, `scan`) over the shared builder of `common`."""
