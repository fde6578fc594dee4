"""Op semantics, written once, over numpy tiles: `payload` (the table of arith/math/rdu.index/
tensor.extract/cf.assert rules keyed by op class, the precompiled fast path and
`evaluate_op` for constant folding), `functions` (the same table as xDSL
`InterpreterFunctions`) and `kernel` (one `rdu.kernel` run tile by tile: used by the
emulator and by rdu-convert-linalg to refuse kernels the emulator cannot run)."""
