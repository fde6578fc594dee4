"""rdu-tier-rows: hot rows of each embedding table in HBM, cold rows in DDR (issue 16).

Runs before `rdu-allocate`. Every *row gather* (`kernel.traffic.row_gather`: a gather kernel
whose one capture is a 2-d table that is a function argument, read one row per access at a
row number from data) is a candidate. Its table's rows are ranked by an access profile, and
the densest rows of all tables (expected lookups per batch / row bytes,
`plan.tiering.place_rows`) fill `hbm_bytes` of HBM; the rest of each table goes to DDR. The
kernel gets `hot_rows = H` (rows [0, H) of its table are in HBM, [H, rows) in DDR) and
`hot_fraction = f` (the share of its row reads expected to fall below H). `rdu-allocate`
then counts H rows of the table against HBM and the rest against DDR; the cost model charges
f of the row reads at HBM's burst and bandwidth and 1 - f at DDR's; the emulator reads each
row from the tier its actual row number falls in.

Profiles:

- `zipf=s` (s > 0): an assumption the pass states, not a measurement: row r (0-based) is the
  (r + 1)-th most frequent, looked up with probability (r + 1)^-s / H(n, s). It presumes the
  IDs are numbered hot-first (as a frequency-sorted vocabulary, or a collisionless table's
  snapshot numbered by its counts, is); f = H(H, s) / H(n, s).
- `profile=path`: a JSON object, function-argument position (as a string) -> per-row access
  counts of that table (one per row, in row order, not all zero). The placement ranks rows
  by count (how many rows are worth HBM), and f is the share of the counts in rows [0, H)
  as numbered: a table that is not numbered hot-first gets the f its numbering earns.
  Tables the profile does not name use `zipf` if given.

Options: `hbm_bytes` (required, >= 0: the HBM budget for the gathered tables' rows; other
tensors are placed by rdu-allocate as before), `zipf`, `profile`, `fabric`. A table also
read any other way (a load, another kind of kernel) is left whole. The module gets
`rdu.tier_rows` (a string: the budget and the profile used).

Raises (CompileError naming the option or table, and the fix): hbm_bytes missing, negative
or above the fabric's HBM; no profile for a table; a bad zipf; a profile file that is
missing, not JSON, names no tiered table, or has a count list of the wrong length.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import FloatAttr, IntegerAttr, ModuleOp, StringAttr, f64, i64
from xdsl.ir import BlockArgument, SSAValue
from xdsl.passes import ModulePass

from rdu_compiler.dialects import rdu
from rdu_compiler.errors import CompileError
from rdu_compiler.kernel.traffic import itemsize, row_accesses, row_gather
from rdu_compiler.passes.common import fabric_for, functions
from rdu_compiler.plan.tiering import TableProfile, TieringError, place_rows, zipf_hit_fraction

NAME = "rdu-tier-rows"


def _fail(message: str) -> CompileError:
    return CompileError(NAME, message)


def tiered_tables(fn: func.FuncOp) -> dict[BlockArgument, list[rdu.KernelOp]]:
    """Function-argument tables read only by row gathers, with those kernels."""
    readers: dict[SSAValue, list[rdu.KernelOp]] = {}
    other: set[SSAValue] = set()
    for op in fn.body.block.walk():
        for v in op.operands:
            if not isinstance(v, BlockArgument) or v.owner is not fn.body.block:
                continue
            if isinstance(op, rdu.KernelOp) and row_gather(op) is not None and list(op.captures) == [v]:
                readers.setdefault(v, []).append(op)
            elif not isinstance(op, rdu.SectionOp):
                other.add(v)
    return {v: ks for v, ks in readers.items() if v not in other and isinstance(v, BlockArgument)}


def _load_profile(path: str) -> dict[int, np.ndarray]:
    try:
        raw = json.loads(Path(path).read_text())
    except OSError as e:
        raise _fail(f"profile '{path}' cannot be read ({e.strerror}); give a JSON file of argument position -> counts") from e
    except json.JSONDecodeError as e:
        raise _fail(f"profile '{path}' is not JSON ({e.msg}, line {e.lineno}); give {{\"8\": [counts...], ...}}") from e
    if not isinstance(raw, dict):
        raise _fail(f"profile '{path}' must be a JSON object of argument position -> per-row counts")
    out = {}
    for key, counts in raw.items():
        if not str(key).isdigit() or not isinstance(counts, list):
            raise _fail(f"profile '{path}': entry {key!r} must be an argument position (\"8\") -> a list of counts")
        out[int(key)] = np.asarray(counts, dtype=np.float64)
    return out


@dataclass(frozen=True)
class RduTierRowsPass(ModulePass):
    """Split each embedding table's rows: hot ones (by profile or stated Zipf) in HBM, cold in DDR."""

    name = NAME

    hbm_bytes: int = -1
    zipf: float = 0.0
    profile: str = ""
    fabric: str = ""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        fabric = fabric_for(self.name, self.fabric, op)
        if not 0 <= self.hbm_bytes <= fabric.hbm.capacity_bytes:
            raise _fail(f"hbm_bytes = {self.hbm_bytes}: give the HBM budget for table rows, 0 to "
                        f"{fabric.hbm.capacity_bytes} B (fabric '{fabric.name}'), e.g. rdu-tier-rows{{hbm_bytes=268435456 zipf=1.05}}")
        if self.zipf < 0 or not math.isfinite(self.zipf):
            raise _fail(f"zipf = {self.zipf}: give a Zipf exponent > 0 (e.g. zipf=1.05), or a profile")
        if not self.zipf and not self.profile:
            raise _fail("no access profile: give zipf=s (a stated Zipf(s) assumption) or profile=path (per-row counts)")
        counts = _load_profile(self.profile) if self.profile else {}
        for fn in functions(op):
            self._apply_fn(fn, fabric.hbm.capacity_bytes, counts)
        source = f"profile {self.profile}" + (f", else zipf(s={self.zipf})" if self.zipf else "") if self.profile else f"zipf(s={self.zipf})"
        op.attributes["rdu.tier_rows"] = StringAttr(f"hbm_bytes={self.hbm_bytes} {source}")

    def _apply_fn(self, fn: func.FuncOp, hbm_capacity: int, counts: dict[int, np.ndarray]) -> None:
        tables = tiered_tables(fn)
        positions = {v.index for v in tables}
        unknown = sorted(set(counts) - positions)
        if unknown:
            raise _fail(f"profile '{self.profile}' names arguments {unknown}, which are not tables read only by row "
                        f"gathers (those are {sorted(positions)}); key the counts by one of these")
        profiles = []
        for v, kernels in tables.items():
            rows, cols = rdu.shape_of(v.type)
            name = f"arg{v.index}"
            c = counts.get(v.index)
            if c is not None and (c.shape != (rows,) or (c < 0).any() or c.sum() <= 0):
                raise _fail(f"profile '{self.profile}': table {name} has {rows} rows; give {rows} non-negative counts, "
                            f"not all zero (got {c.size})")
            if c is None and not self.zipf:
                raise _fail(f"table {name} ({rows} x {cols}, read by '{kernels[0].label}') has no counts in profile "
                            f"'{self.profile}'; add them or give zipf=s for the tables it does not name")
            try:
                profiles.append(TableProfile(name, rows, cols * itemsize(v.type), float(sum(row_accesses(k) for k in kernels)),
                                             zipf_s=None if c is not None else self.zipf,
                                             counts=tuple(c.tolist()) if c is not None else None))
            except TieringError as e:
                raise _fail(str(e)) from e
        if not profiles:
            return
        placed = place_rows(profiles, [("hbm", min(self.hbm_bytes, hbm_capacity))])
        for (v, kernels), p in zip(tables.items(), profiles, strict=True):
            hot = placed[p.name]["hbm"]
            c = counts.get(v.index)
            if c is not None:
                f = float(c[:hot].sum() / c.sum())
            else:
                f = zipf_hit_fraction(hot, p.rows, self.zipf)
            for k in kernels:
                k.hot_rows = IntegerAttr(hot, i64)
                k.hot_fraction = FloatAttr(min(1.0, f), f64)
