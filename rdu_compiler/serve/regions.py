"""A fabric share as a fabric spec: the region of the grid a phase's program is compiled for.

A share F of a fabric (rows x cols, AGCUs on the left and right edges) is the band of the
first `round(F * rows)` rows, all columns, with `round(F * AGCU count)` AGCUs (at least 1,
at most 2 per row, as `fabric/spec.py` requires). PCUs, PMUs and AGCUs are thus the share's
own; HBM and DDR keep the whole socket's capacity and bandwidth, because they are shared by
the programs resident together (`contention.py` charges that sharing). Everything else
(clock, unit parameters, links, launch overhead) is the base fabric's. A region is a share
of one socket: its spec has `[sockets] count = 1` even when the base is a node such as
`sn40l-node8` (the node's links are used by `serve.disagg`, not by the socket's programs).

The share is written as a TOML file (the compiler's passes name the fabric by path), named
after the base fabric and the row count, in a directory of the caller's.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from rdu_compiler.errors import RduError
from rdu_compiler.fabric import Fabric, load_fabric


class ShareError(RduError):
    """A fabric share that cannot be built (share outside (0, 1], fewer rows than one)."""


@dataclass(frozen=True)
class Region:
    """A share of `base`: `rows` of its rows, `agcus` of its AGCUs; `path` is the spec file.

    share: rows / base.rows, the fraction actually granted (the request is rounded to rows).
    """

    base: str
    rows: int
    agcus: int
    share: float
    path: str


def fabric_digest(fabric: Fabric) -> str:
    """A short hash of one socket's content (for cache keys; the name alone could be reused,
    and is left out: `sn40l` and a socket of `sn40l-node8` are the same socket)."""
    text = _toml(fabric, fabric.rows, fabric.agcu.count, "")
    body = text.split("\n", 1)[1]  # the first line is a comment naming the base and its file
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def share_rows(fabric: Fabric, share: float) -> int:
    """Rows granted to `share` of `fabric` (rounded, >= 1, the grid's sites kept even).

    Raises:
        ShareError: share not in (0, 1].
    """
    if not 0 < share <= 1:
        raise ShareError(f"a fabric share must be in (0, 1], got {share!r}")
    rows = max(1, min(fabric.rows, round(share * fabric.rows)))
    if rows * fabric.cols % 2:
        rows = rows + 1 if rows < fabric.rows else rows - 1
    return rows


def region(base: str | Fabric, share: float, directory: str | os.PathLike[str]) -> Region:
    """Write the spec of `share` of `base` (a preset name, .toml path or Fabric) under
    `directory` and return it.

    Raises:
        ShareError: share not in (0, 1].
        FabricError: `base` cannot be loaded.
    """
    fab = base if isinstance(base, Fabric) else load_fabric(base)
    rows = share_rows(fab, share)
    agcus = max(1, min(2 * rows, round(fab.agcu.count * rows / fab.rows)))
    name = f"{fab.name}-r{rows}of{fab.rows}"
    text = _toml(fab, rows, agcus, name)
    Path(directory).mkdir(parents=True, exist_ok=True)
    path = Path(directory) / f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:8]}.toml"
    if not path.exists():
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return Region(fab.name, rows, agcus, rows / fab.rows, str(path))


def _toml(f: Fabric, rows: int, agcus: int, name: str) -> str:
    flops = "\n".join(f"{k} = {v}" for k, v in sorted(f.pcu.flops_per_cycle.items()))
    return f"""# {rows} of {f.rows} rows of fabric {f.name!r} ({f.source}), written by rdu_compiler.serve.regions.
[fabric]
name = "{name}"
clock_hz = {f.clock_hz!r}
[grid]
rows = {rows}
cols = {f.cols}
layout = "{f.layout}"
[pcu]
lanes = {f.pcu.lanes}
stages = {f.pcu.stages}
[pcu.flops_per_cycle]
{flops}
[pmu]
capacity_bytes = {f.pmu.capacity_bytes}
banks = {f.pmu.banks}
bytes_per_cycle = {f.pmu.bytes_per_cycle}
[agcu]
count = {agcus}
bytes_per_cycle = {f.agcu.bytes_per_cycle}
[hbm]
capacity_bytes = {f.hbm.capacity_bytes}
bytes_per_s = {f.hbm.bytes_per_s!r}
[ddr]
capacity_bytes = {f.ddr.capacity_bytes}
bytes_per_s = {f.ddr.bytes_per_s!r}
[network]
link_bytes_per_cycle = {f.link_bytes_per_cycle}
[launch]
program_load_s = {f.program_load_s!r}
argument_load_s = {f.argument_load_s!r}
[sockets]
count = 1
p2p_bytes_per_s = {f.p2p_bytes_per_s!r}
"""
