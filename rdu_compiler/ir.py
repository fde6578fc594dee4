"""The xDSL context of this project and small IR helpers shared by passes and tools."""

from __future__ import annotations

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, UnregisteredOp
from xdsl.ir import Operation
from xdsl.parser import Parser


def make_context() -> Context:
    """An xDSL context with every dialect a torch-mlir linalg module and an rdu program use.

    Unregistered ops are allowed so that ops xDSL does not define (`linalg.batch_matmul`,
    `tm_tensor.scan`) parse; `rdu-convert-linalg` converts them or names them in an error.
    """
    from xdsl.dialects import get_all_dialects

    from rdu_compiler.dialects.rdu import RDU

    ctx = Context(allow_unregistered=True)
    for name, factory in get_all_dialects().items():
        ctx.register_dialect(name, factory)
    ctx.load_dialect(RDU)
    return ctx


def parse_module(text: str, name: str = "<input>") -> ModuleOp:
    """Parse MLIR text (generic or custom form) into an xDSL module.

    Raises:
        xdsl.utils.exceptions.ParseError: the text is not valid MLIR for these dialects.
    """
    return Parser(make_context(), text, name).parse_module()


def op_name(op: Operation) -> str:
    """The op's MLIR name, also for unregistered ops (`linalg.batch_matmul`)."""
    if isinstance(op, UnregisteredOp):
        return op.op_name.data
    return op.name
