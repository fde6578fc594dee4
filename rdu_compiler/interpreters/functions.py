"""The payload semantics table as xDSL `InterpreterFunctions`.

`PayloadFunctions` registers one `@impl` per op class of `interpreters.payload.PAYLOAD_OPS`
(the ops xDSL parses as registered; the few it parses as unregistered, such as
`math.sigmoid`, have no class for xDSL's `Interpreter` to dispatch on). Each implementation
is `evaluate_op`: the same rule the emulator's precompiled fast path (`CompiledPayload`)
and constant folding use, on numpy scalars or arrays. With `FuncFunctions` an xDSL
`Interpreter` runs scalar arith/math functions exactly as the emulator does:

    interpreter = Interpreter(module)
    interpreter.register_implementations(FuncFunctions())
    interpreter.register_implementations(PayloadFunctions())
    (result,) = interpreter.call_op("f", (np.float32(2.0),))

`rdu.index` and `tensor.extract` need a tile (index grids, gather accounting) and
`cf.assert` has no result; they are left to `CompiledPayload`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from xdsl.dialects import cf, tensor
from xdsl.interpreter import Interpreter, InterpreterFunctions, PythonValues, impl, register_impls
from xdsl.ir import Operation

from rdu_compiler.dialects import rdu
from rdu_compiler.interpreters.payload import PAYLOAD_OPS, evaluate_op

#: Table ops that need a tile, or have no result: not given to xDSL's interpreter.
TILE_ONLY: frozenset[type[Operation]] = frozenset({rdu.IndexOp, tensor.ExtractOp, cf.AssertOp})


def _run(ft: InterpreterFunctions, interpreter: Interpreter, op: Operation, args: PythonValues) -> PythonValues:
    """One op by the table's rule (numpy values in and out)."""
    return (evaluate_op(op, [np.asarray(a) for a in args]),)


#: The op classes `PayloadFunctions` implements.
IMPLEMENTED: tuple[type[Operation], ...] = tuple(
    sorted((k for k in PAYLOAD_OPS if isinstance(k, type) and k not in TILE_ONLY), key=lambda k: k.__name__)
)


def _functions() -> type[InterpreterFunctions]:
    methods: dict[str, Any] = {f"run_{key.__name__}": impl(key)(_run) for key in IMPLEMENTED}
    return register_impls(type("PayloadFunctions", (InterpreterFunctions,), methods))


PayloadFunctions = _functions()
