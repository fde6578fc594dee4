"""Section checks against the fabric: the fabric a module names (`rdu.fabric`), units and
PMU capacity claimed, and every PCU/PMU/AGCU site on the grid (checkerboard, edges).

`rdu.section`'s verifier calls these; the emulator calls `verify_against_fabric` with the
fabric it runs on.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from xdsl.dialects.builtin import DenseArrayBase, ModuleOp, StringAttr
from xdsl.ir import Operation
from xdsl.utils.exceptions import VerifyException

from rdu_compiler.fabric import Fabric, FabricError, load_fabric

if TYPE_CHECKING:
    from rdu_compiler.dialects.rdu.ops import KernelOp, SectionOp

#: The module attribute naming the fabric a program is compiled for (preset or spec path).
FABRIC_ATTR = "rdu.fabric"


def module_fabric(op: Operation) -> Fabric | None:
    """The fabric named by the `rdu.fabric` attribute of the outermost module that is or
    encloses `op` (None when no module names one).

    Raises:
        VerifyException: the named preset or spec file cannot be loaded.
    """
    name = None
    parent: Operation | None = op
    while parent is not None:
        attr = parent.attributes.get(FABRIC_ATTR) if isinstance(parent, ModuleOp) else None
        if isinstance(attr, StringAttr):
            name = attr.data
        parent = parent.parent_op()
    if name is None:
        return None
    try:
        return _load_fabric(name)
    except FabricError as e:
        raise VerifyException(
            f"the module names fabric {name!r} ({FABRIC_ATTR}), which cannot be loaded, so its capacities cannot be "
            f"checked: {e} (a relative spec path is read from the current folder; point {FABRIC_ATTR} at the spec)"
        ) from e


@lru_cache(maxsize=16)
def _load_fabric(name: str) -> Fabric:
    return load_fabric(name)


def verify_against_fabric(op: SectionOp, fabric: Fabric) -> None:
    """Check a section against `fabric`: units available, grid shape, PMU capacity of every
    buffer, and every PCU/PMU/AGCU site on the fabric's grid (when the section has no
    `grid`), as well as the section's own rules. The verifier calls it with the fabric the
    module names; the emulator with the fabric it runs on.

    Raises:
        VerifyException: naming the section, kernel and field that do not fit.
    """
    section, kernels = op.sym_name.data, op.kernels()
    grid = tuple(op.grid.get_values()) if op.grid is not None else None
    where = f"section '{section}' on fabric '{fabric.name}'"
    for field, have in (("pcus_available", fabric.num_pcus), ("pmus_available", fabric.num_pmus)):
        claimed = getattr(op, field).value.data
        if claimed > have:
            raise VerifyException(f"{where}: {field} = {claimed} but the fabric has {have}; re-run rdu-section")
    if grid is not None and grid != (fabric.rows, fabric.cols):
        raise VerifyException(
            f"{where}: grid {list(grid)} but the fabric's grid is {fabric.rows} x {fabric.cols}; re-run rdu-place"
        )
    for k in kernels:
        for i, b in enumerate(k.buffers.data if k.buffers is not None else ()):
            if b.pmu_capacity.data != fabric.pmu.capacity_bytes:
                raise VerifyException(
                    f"{where}: kernel '{k.label}' buffer {i} claims PMUs of {b.pmu_capacity.data} B but the "
                    f"fabric's PMUs hold {fabric.pmu.capacity_bytes} B; re-run rdu-allocate"
                )
    if grid is None:  # sites on an unmarked section: check them against the fabric's grid
        verify_sites(section, kernels, (fabric.rows, fabric.cols))
        verify_agcus(section, op, (fabric.rows, fabric.cols))


def site_pairs(attr: DenseArrayBase[Any], what: str) -> list[tuple[int, int]]:
    """`(row, col)` pairs of a flattened site array; raises VerifyException on an odd length."""
    values = [int(v) for v in attr.get_values()]
    if len(values) % 2:
        raise VerifyException(f"{what} must be (row, col) pairs, got {len(values)} values")
    return list(zip(values[0::2], values[1::2], strict=True))


def _off_grid(site: tuple[int, int], grid: tuple[int, ...] | None) -> bool:
    r, c = site
    return r < 0 or c < 0 or (grid is not None and (r >= grid[0] or c >= grid[1]))


def verify_sites(section: str, kernels: list[KernelOp], grid: tuple[int, ...] | None) -> None:
    """No site used twice, none off the grid, PCUs on PCU sites and PMUs on PMU sites."""
    used: dict[tuple[int, int], str] = {}
    shape = f"the {grid[0]} x {grid[1]} grid" if grid else "the grid"
    for k in kernels:
        for field, kind, want in (("pcu_sites", "PCU", 0), ("pmu_sites", "PMU", 1)):
            attr = getattr(k, field)
            if attr is None:
                continue
            for s in site_pairs(attr, f"section '{section}': kernel '{k.label}' {field}"):
                if _off_grid(s, grid):
                    raise VerifyException(f"section '{section}': kernel '{k.label}' placed a {kind} on {s}, off {shape}")
                if (s[0] + s[1]) % 2 != want:
                    other = "PMU" if want == 0 else "PCU"
                    raise VerifyException(
                        f"section '{section}': kernel '{k.label}' placed a {kind} on {s}, a {other} site "
                        "(checkerboard: (row + col) even is a PCU site, odd a PMU site)"
                    )
                if s in used:
                    raise VerifyException(f"section '{section}': kernels '{used[s]}' and '{k.label}' both placed on site {s}")
                used[s] = k.label


def verify_agcus(section: str, op: SectionOp, grid: tuple[int, ...] | None) -> None:
    """Every recorded AGCU endpoint sits on the grid's left (col -1) or right (col cols) edge."""
    for inner in op.body.block.ops:
        attr = inner.properties.get("agcu_sites")
        if not isinstance(attr, DenseArrayBase):
            continue
        for r, c in site_pairs(attr, f"section '{section}': {inner.name} agcu_sites"):
            edge = c == -1 or (c == grid[1] if grid else c >= 0)
            if r < 0 or (grid is not None and r >= grid[0]) or not edge:
                where = f"col -1 or {grid[1]}" if grid else "col -1 or cols"
                raise VerifyException(
                    f"section '{section}': {inner.name} routed through AGCU ({r}, {c}), off the grid; "
                    f"AGCUs sit on the edges ({where}) of the grid's rows"
                )
