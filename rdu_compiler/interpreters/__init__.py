"""Op semantics, written once, over numpy tiles: `payload` (arith/math/rdu.index/
tensor.extract/cf.assert on whole tiles, also used for constant folding) and `kernel`
(one `rdu.kernel` run tile by tile: used by the emulator and by rdu-convert-linalg to refuse
kernels the emulator cannot run)."""
