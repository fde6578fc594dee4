"""What several rdu passes share: the fabric a pass targets, and walking kernels."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr

from rdu_compiler.dialects.rdu import FABRIC_ATTR, KernelOp
from rdu_compiler.errors import CompileError
from rdu_compiler.fabric import Fabric, FabricError, load_fabric

__all__ = ["FABRIC_ATTR"]  # defined with the dialect (its verifier reads it); re-exported for the passes


@lru_cache(maxsize=16)
def _load(name: str) -> Fabric:
    return load_fabric(name)


def fabric_for(pass_name: str, option: str, module: ModuleOp) -> Fabric:
    """The fabric a pass targets: its `fabric` option, else the module's `rdu.fabric`
    attribute, else `sn40l`. The choice is written back onto the module so later passes
    and the emulator agree.

    Raises:
        CompileError: the named preset or spec file is invalid.
    """
    name = option
    attr = module.attributes.get(FABRIC_ATTR)
    if not name and isinstance(attr, StringAttr):
        name = attr.data
    name = name or "sn40l"
    try:
        fabric = _load(name)
    except FabricError as e:
        raise CompileError(pass_name, str(e)) from e
    module.attributes[FABRIC_ATTR] = StringAttr(name)
    return fabric


def functions(module: ModuleOp) -> Iterator[func.FuncOp]:
    for op in module.ops:
        if isinstance(op, func.FuncOp) and not op.is_declaration:
            yield op


def kernels(module: ModuleOp) -> Iterator[KernelOp]:
    for op in module.walk():
        if isinstance(op, KernelOp):
            yield op
