"""The fabric spec: the target RDU as frozen, validated data loaded from TOML.

A fabric is a grid of PCUs (compute) and PMUs (SRAM) in a checkerboard, AGCUs on
the left and right edges bridging to the off-chip tiers (HBM, DDR), a mesh
network, a kernel launch overhead and a socket count. Presets ship in
``rdu_compiler/fabric/presets/*.toml``; the numbers in ``sn40l.toml`` carry
their sources (see ``reference/sn40l.md``).

Units: sizes in bytes, bandwidths in bytes/s or bytes/cycle as named, clock in
Hz, times in seconds, compute in FLOP/cycle per PCU.

Upper bounds (``LIMITS``): a spec may not ask for more than a plausible chip, so a
typo cannot make the placer list 10^10 sites. Every number field is positive and at
most its limit; the grid also has at most ``MAX_SITES`` sites:

=================================  ==================  ===================
field                              limit               SN40L preset
=================================  ==================  ===================
[grid].rows, [grid].cols           512                 40, 52
[grid].rows x [grid].cols          65536 sites         2080
[pcu].lanes, [pcu].stages          1024                32, 6
[pcu.flops_per_cycle].*            2^20                up to 2048
[pmu].capacity_bytes               64 MiB (2^26)       512 KiB
[pmu].banks                        1024                16
every *bytes_per_cycle             2^16                64
[agcu].count                       2 x [grid].rows     32
[hbm|ddr].capacity_bytes           1 PiB (2^50)        64 GiB, 1.5 TiB
[hbm|ddr].bytes_per_s, p2p         1e15 B/s            1.8e12, 2e11
[hbm|ddr].burst_bytes (optional)   4096                64, 64 (default 64)
[fabric].clock_hz                  1e11 Hz             1.6e9
[launch].*_s                       1 s                 1e-5, 1e-6
[sockets].count                    1024                1 (node8: 8, rack16: 16)
[sockets].hop_latency_s, sync_s    1 s                 1e-6, 1e-5
[sockets].ddr_to_hbm_bytes_per_s   1e15 B/s            1.25e11
=================================  ==================  ===================

A spec may start from another with a top-level ``extends = "<preset or path>"``: its
tables are the base's, field by field overridden by the ones it gives (the multi-socket
presets extend ``sn40l``).
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rdu_compiler.errors import RduError
from rdu_compiler.fabric.node import NodeSpec, read_node

LAYOUTS = ("checkerboard",)

# dtype spellings that share a FLOP/cycle entry with a canonical name.
_DTYPE_ALIASES = {
    "f32": "fp32",
    "float32": "fp32",
    "f64": "fp64",
    "float64": "fp64",
    "f16": "fp16",
    "float16": "fp16",
    "bfloat16": "bf16",
}
_INT_DTYPES = frozenset({"i1", "i8", "i16", "i32", "i64", "int8", "int16", "int32", "int64"})


class FabricError(ValueError):
    """An invalid or unreadable fabric spec; the message names the file, the field
    (``[table].field``) and what to do."""


@dataclass(frozen=True)
class PCUSpec:
    """One Pattern Compute Unit: ``lanes`` SIMD lanes x ``stages`` pipeline stages.

    ``flops_per_cycle`` maps a dtype name ("bf16", "fp16", "fp32", "int", ...) to
    FLOP/cycle of one PCU (an FMA counts as 2 FLOPs).
    """

    lanes: int
    stages: int
    flops_per_cycle: Mapping[str, int] = field(hash=False)

    def __post_init__(self) -> None:
        frozen = MappingProxyType(dict(self.flops_per_cycle))
        object.__setattr__(self, "flops_per_cycle", frozen)

    def flops_per_cycle_for(self, dtype: str) -> int:
        """FLOP/cycle of one PCU for ``dtype``.

        An exact entry wins; otherwise "f32"/"float32" use "fp32", "f16"/"float16"
        use "fp16", "bfloat16" uses "bf16", and integer types (i1..i64) use the
        "int" entry if present, else the "fp32" entry.

        Raises:
            FabricError: no entry applies to ``dtype``.
        """
        for key in _dtype_candidates(dtype):
            if key in self.flops_per_cycle:
                return self.flops_per_cycle[key]
        known = ", ".join(sorted(self.flops_per_cycle))
        raise FabricError(
            f"PCU has no FLOP/cycle entry for dtype {dtype!r} (known: {known}); "
            f"add it to [pcu.flops_per_cycle] in the fabric TOML"
        )


def _dtype_candidates(dtype: str) -> list[str]:
    """Keys of ``flops_per_cycle`` to try for ``dtype``, best first."""
    name = dtype.lower()
    if name in _INT_DTYPES:
        return [name, "int", "fp32"]
    return [name, _DTYPE_ALIASES.get(name, name)]


@dataclass(frozen=True)
class PMUSpec:
    """One Pattern Memory Unit: ``capacity_bytes`` of SRAM in ``banks`` banks,
    ``bytes_per_cycle`` of read+write bandwidth."""

    capacity_bytes: int
    banks: int
    bytes_per_cycle: int


@dataclass(frozen=True)
class AGCUSpec:
    """Address Generation and Coalescing Units: ``count`` of them, each moving
    ``bytes_per_cycle`` between the fabric and the off-chip tiers."""

    count: int
    bytes_per_cycle: int


@dataclass(frozen=True)
class TierSpec:
    """An off-chip memory tier (HBM or DDR): capacity in bytes, bandwidth in bytes/s, and
    its access granularity ``burst_bytes`` (a gather reads each run of contiguous bytes
    rounded up to it; 64 when the spec does not say: see ``presets/sn40l.toml``, [NF])."""

    capacity_bytes: int
    bytes_per_s: float
    burst_bytes: int = 64


@dataclass(frozen=True)
class Fabric:
    """One RDU socket and its memory system; see the module docstring for units.

    ``source`` is the preset name or the path of the TOML file it came from.
    With ``layout == "checkerboard"`` site (r, c) is a PCU when (r + c) is even,
    else a PMU.
    """

    name: str
    source: str
    clock_hz: float
    rows: int
    cols: int
    layout: str
    pcu: PCUSpec
    pmu: PMUSpec
    agcu: AGCUSpec
    hbm: TierSpec
    ddr: TierSpec
    link_bytes_per_cycle: int
    program_load_s: float
    argument_load_s: float
    sockets: int
    p2p_bytes_per_s: float
    node_spec: NodeSpec | None = None  # None: one socket, nothing crosses sockets

    def __post_init__(self) -> None:
        if self.node_spec is None and self.sockets != 1:
            raise ValueError(f"Fabric with {self.sockets} sockets needs node_spec (a NodeSpec: topology, latencies)")

    @property
    def node(self) -> NodeSpec:
        """The node this socket is part of (`fabric/node.py`); one socket when not given."""
        if self.node_spec is None:
            return NodeSpec(1, "single", self.p2p_bytes_per_s, 0.0, 0.0, self.ddr.bytes_per_s)
        return self.node_spec

    @property
    def num_pcus(self) -> int:
        """PCUs on the grid (checkerboard: ceil(rows*cols / 2))."""
        return (self.rows * self.cols + 1) // 2

    @property
    def num_pmus(self) -> int:
        """PMUs on the grid (checkerboard: floor(rows*cols / 2))."""
        return self.rows * self.cols // 2

    @property
    def sram_bytes(self) -> int:
        """Total on-chip SRAM in bytes: num_pmus * pmu.capacity_bytes."""
        return self.num_pmus * self.pmu.capacity_bytes

    @property
    def launch_overhead_s(self) -> float:
        """Seconds to launch one section: program load + argument load (SN40L §IV-D)."""
        return self.program_load_s + self.argument_load_s

    def peak_flops(self, dtype: str) -> float:
        """Peak FLOP/s of the whole socket: num_pcus * FLOP/cycle(dtype) * clock_hz.

        Raises:
            FabricError: the PCU has no FLOP/cycle entry for ``dtype``.
        """
        return self.num_pcus * self.pcu.flops_per_cycle_for(dtype) * self.clock_hz

    def pcu_sites(self) -> list[tuple[int, int]]:
        """(row, col) of every PCU, row-major."""
        return [s for s in self._sites() if (s[0] + s[1]) % 2 == 0]

    def pmu_sites(self) -> list[tuple[int, int]]:
        """(row, col) of every PMU, row-major."""
        return [s for s in self._sites() if (s[0] + s[1]) % 2 == 1]

    def agcu_sites(self) -> list[tuple[int, int]]:
        """(row, col) of every AGCU, row-major: ceil(count/2) on the left edge
        (col -1), the rest on the right edge (col ``cols``), spread evenly over
        the rows of each edge."""
        left = (self.agcu.count + 1) // 2
        right = self.agcu.count - left
        sites = [(r, -1) for r in _spread(left, self.rows)]
        sites += [(r, self.cols) for r in _spread(right, self.rows)]
        return sorted(sites)

    def _sites(self) -> list[tuple[int, int]]:
        return [(r, c) for r in range(self.rows) for c in range(self.cols)]


def _spread(n: int, rows: int) -> list[int]:
    """``n`` row indices spread evenly over ``rows`` rows (centres of n equal bands)."""
    return [(2 * i + 1) * rows // (2 * n) for i in range(n)]


# ---------------------------------------------------------------------------
# Loading and validation
# ---------------------------------------------------------------------------

# table -> field -> kind. "table" is a sub-table of dtype -> positive int.
_SCHEMA: dict[str, dict[str, str]] = {
    "fabric": {"name": "str", "clock_hz": "float"},
    "grid": {"rows": "int", "cols": "int", "layout": "str"},
    "pcu": {"lanes": "int", "stages": "int", "flops_per_cycle": "table"},
    "pmu": {"capacity_bytes": "int", "banks": "int", "bytes_per_cycle": "int"},
    "agcu": {"count": "int", "bytes_per_cycle": "int"},
    "hbm": {"capacity_bytes": "int", "bytes_per_s": "float", "burst_bytes": "int"},
    "ddr": {"capacity_bytes": "int", "bytes_per_s": "float", "burst_bytes": "int"},
    "network": {"link_bytes_per_cycle": "int"},
    "launch": {"program_load_s": "float", "argument_load_s": "float"},
    "sockets": {"count": "int", "p2p_bytes_per_s": "float", "topology": "str", "hop_latency_s": "float",
                "sync_s": "float", "ddr_to_hbm_bytes_per_s": "float", "node_sockets": "int"},
}

_PRESETS = resources.files("rdu_compiler.fabric").joinpath("presets")

# Upper bound of each number field (see the module docstring); a table key covers its fields.
MAX_SITES = 1 << 16
LIMITS: dict[str, int | float] = {
    "[grid].rows": 512,
    "[grid].cols": 512,
    "[pcu].lanes": 1024,
    "[pcu].stages": 1024,
    "[pcu.flops_per_cycle]": 1 << 20,
    "[pmu].capacity_bytes": 1 << 26,
    "[pmu].banks": 1024,
    "[pmu].bytes_per_cycle": 1 << 16,
    "[agcu].count": 1 << 11,  # and 2 x rows, checked with the grid
    "[agcu].bytes_per_cycle": 1 << 16,
    "[network].link_bytes_per_cycle": 1 << 16,
    "[hbm].capacity_bytes": 1 << 50,
    "[ddr].capacity_bytes": 1 << 50,
    "[hbm].bytes_per_s": 1e15,
    "[ddr].bytes_per_s": 1e15,
    "[hbm].burst_bytes": 4096,
    "[ddr].burst_bytes": 4096,
    "[sockets].p2p_bytes_per_s": 1e15,
    "[fabric].clock_hz": 1e11,
    "[launch].program_load_s": 1.0,
    "[launch].argument_load_s": 1.0,
    "[sockets].count": 1024,
    "[sockets].node_sockets": 1024,
    "[sockets].hop_latency_s": 1.0,
    "[sockets].sync_s": 1.0,
    "[sockets].ddr_to_hbm_bytes_per_s": 1e15,
}


def preset_names() -> list[str]:
    """Names of the fabric presets shipped with the package, sorted."""
    names = [p.name[: -len(".toml")] for p in _PRESETS.iterdir() if p.name.endswith(".toml")]
    return sorted(names)


def load_fabric(name_or_path: str | os.PathLike[str]) -> Fabric:
    """Load a preset by name ("sn40l", "tiny") or a user spec from a .toml path.

    Raises:
        FabricError: unknown preset, unreadable file, bad TOML, or an invalid
            spec (missing, mistyped, non-positive or unknown field).
    """
    name = os.fspath(name_or_path)
    if not name.strip():
        raise FabricError(
            f"empty fabric name {name!r}; pass a preset name ({', '.join(preset_names())}) or the path of a fabric spec .toml"
        )
    if name in preset_names():
        resource = _PRESETS.joinpath(f"{name}.toml")
        where = f"preset {name!r} (rdu_compiler/fabric/presets/{name}.toml)"
        return _parse_fabric(resource.read_text(encoding="utf-8"), source=name, where=where)
    path = Path(name)
    if path.suffix != ".toml" and not path.exists():
        presets = ", ".join(preset_names())
        raise FabricError(
            f"unknown fabric {name!r}: not a preset ({presets}) and not a .toml file; "
            f"pass a preset name or the path of a fabric spec .toml"
        )
    return _parse_fabric(_read_text(path), source=name, where=name, base_dir=path.parent)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise FabricError(
            f"{path}: cannot read fabric spec ({err}); check the path and permissions"
        ) from err


def _parse_fabric(text: str, source: str, where: str, base_dir: Path | None = None) -> Fabric:
    """Parse and validate TOML ``text``; ``where`` names the file in errors.

    Raises:
        FabricError: bad TOML or an invalid spec.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise FabricError(f"{where}: invalid TOML ({err}); fix the syntax") from err
    doc = _resolve_extends(doc, where, base_dir, ())
    r = _Reader(doc, where)
    fabric = Fabric(
        name=r.get_str("fabric", "name"),
        source=source,
        clock_hz=r.get_float("fabric", "clock_hz"),
        rows=r.get_int("grid", "rows"),
        cols=r.get_int("grid", "cols"),
        layout=r.get_str("grid", "layout"),
        pcu=PCUSpec(r.get_int("pcu", "lanes"), r.get_int("pcu", "stages"), r.get_flops_table()),
        pmu=PMUSpec(
            r.get_int("pmu", "capacity_bytes"),
            r.get_int("pmu", "banks"),
            r.get_int("pmu", "bytes_per_cycle"),
        ),
        agcu=AGCUSpec(r.get_int("agcu", "count"), r.get_int("agcu", "bytes_per_cycle")),
        hbm=TierSpec(r.get_int("hbm", "capacity_bytes"), r.get_float("hbm", "bytes_per_s"), r.get_int_or("hbm", "burst_bytes", 64)),
        ddr=TierSpec(r.get_int("ddr", "capacity_bytes"), r.get_float("ddr", "bytes_per_s"), r.get_int_or("ddr", "burst_bytes", 64)),
        link_bytes_per_cycle=r.get_int("network", "link_bytes_per_cycle"),
        program_load_s=r.get_float("launch", "program_load_s"),
        argument_load_s=r.get_float("launch", "argument_load_s"),
        sockets=r.get_int("sockets", "count"),
        p2p_bytes_per_s=r.get_float("sockets", "p2p_bytes_per_s"),
        node_spec=read_node(r, FabricError),
    )
    _check_grid(fabric, where)
    return fabric


MAX_EXTENDS = 8  # bases a spec may chain through


def _resolve_extends(doc: dict[str, Any], where: str, base_dir: Path | None, seen: tuple[str, ...]) -> dict[str, Any]:
    """`doc` with its ``extends`` base merged under it (recursively), typos checked first.

    The base is a preset name or a .toml path (relative to the extending file). Each table
    of `doc` overrides the base's field by field ([pcu.flops_per_cycle] too).

    Raises:
        FabricError: ``extends`` is not a string, names no preset or file, or the chain
            loops or is longer than MAX_EXTENDS.
    """
    doc = dict(doc)
    base = doc.pop("extends", None)
    _check_known(doc, where)
    if base is None:
        return doc
    if not isinstance(base, str) or not base:
        raise FabricError(f"{where}: extends must be a preset name or a .toml path, got {base!r}; fix the value")
    if base in seen or len(seen) >= MAX_EXTENDS:
        chain = " -> ".join([*seen, base])
        raise FabricError(f"{where}: extends chain {chain} loops or is longer than {MAX_EXTENDS}; break the chain")
    if base in preset_names():
        text, base_where, next_dir = _PRESETS.joinpath(f"{base}.toml").read_text(encoding="utf-8"), f"preset {base!r}", None
    else:
        path = Path(base) if base_dir is None or Path(base).is_absolute() else base_dir / base
        if not path.exists():
            raise FabricError(f"{where}: extends {base!r}: not a preset ({', '.join(preset_names())}) and no file {path}; "
                              "fix the name or the path")
        text, base_where, next_dir = _read_text(path), str(path), path.parent
    try:
        base_doc = _resolve_extends(tomllib.loads(text), base_where, next_dir, (*seen, base))
    except tomllib.TOMLDecodeError as err:
        raise FabricError(f"{base_where} (extended by {where}): invalid TOML ({err}); fix the syntax") from err
    merged = {t: dict(b) for t, b in base_doc.items()}
    for table, body in doc.items():
        target = merged.setdefault(table, {})
        for key, value in body.items():
            if isinstance(value, dict) and isinstance(target.get(key), dict):
                target[key] = {**target[key], **value}
            else:
                target[key] = value
    return merged


def _check_known(doc: Mapping[str, Any], where: str) -> None:
    """Reject unknown tables and fields (typos) before reading anything."""
    for table, body in doc.items():
        if table not in _SCHEMA:
            hint = _did_you_mean(table, _SCHEMA)
            raise FabricError(
                f"{where}: unknown table or top-level key [{table}]{hint}; "
                f"valid tables are {', '.join(f'[{t}]' for t in _SCHEMA)}"
            )
        if not isinstance(body, dict):
            raise FabricError(f"{where}: [{table}] must be a table; write it as a [{table}] header")
        for key in body:
            if key not in _SCHEMA[table]:
                hint = _did_you_mean(key, _SCHEMA[table])
                raise FabricError(
                    f"{where}: unknown field [{table}].{key}{hint}; "
                    f"valid fields are {', '.join(_SCHEMA[table])}"
                )


def _did_you_mean(word: str, choices: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_grid(fabric: Fabric, where: str) -> None:
    if fabric.layout not in LAYOUTS:
        raise FabricError(
            f"{where}: [grid].layout is {fabric.layout!r}; set it to one of: {', '.join(LAYOUTS)}"
        )
    if fabric.rows * fabric.cols > MAX_SITES:
        raise FabricError(
            f"{where}: [grid].rows x [grid].cols = {fabric.rows} x {fabric.cols} = {fabric.rows * fabric.cols} sites "
            f"exceeds the limit of {MAX_SITES} sites (SN40L has 2080); use a smaller grid"
        )
    if fabric.rows * fabric.cols % 2:
        raise FabricError(
            f"{where}: [grid].rows x [grid].cols = {fabric.rows} x {fabric.cols} is odd; "
            f"a checkerboard needs an even number of sites (as many PCUs as PMUs)"
        )
    if fabric.agcu.count > 2 * fabric.rows:
        raise FabricError(
            f"{where}: [agcu].count = {fabric.agcu.count} exceeds the {2 * fabric.rows} "
            f"edge sites (2 x [grid].rows); lower the count or add rows"
        )


class _Reader:
    """Typed, positive-checked access to ``doc[table][key]``; errors name ``where``."""

    def __init__(self, doc: Mapping[str, Any], where: str) -> None:
        self.doc = doc
        self.where = where

    def _get(self, table: str, key: str) -> Any:
        body = self.doc.get(table)
        if body is None:
            raise FabricError(
                f"{self.where}: missing table [{table}] (needs [{table}].{key}); add it"
            )
        if key not in body:
            raise FabricError(f"{self.where}: missing field [{table}].{key}; add it to [{table}]")
        return body[key]

    def _fail(self, label: str, want: str, value: object) -> FabricError:
        return FabricError(f"{self.where}: {label} must be {want}, got {value!r}; fix the value")

    def get_str(self, table: str, key: str) -> str:
        value = self._get(table, key)
        if not isinstance(value, str) or not value:
            raise self._fail(f"[{table}].{key}", "a non-empty string", value)
        return value

    def get_int(self, table: str, key: str) -> int:
        label = f"[{table}].{key}"
        return self._bounded(label, self._positive_int(label, self._get(table, key)), LIMITS.get(label))

    def get_int_or(self, table: str, key: str, default: int) -> int:
        """``get_int``, or ``default`` when the table does not give the field."""
        return self.get_int(table, key) if key in self.doc.get(table, {}) else default

    def get_float(self, table: str, key: str) -> float:
        label = f"[{table}].{key}"
        value = self._get(table, key)
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if not is_number or not math.isfinite(value) or value <= 0:
            raise self._fail(label, "a positive number", value)
        return self._bounded(label, float(value), LIMITS.get(label))

    def _bounded(self, label: str, value: Any, limit: int | float | None) -> Any:
        if limit is not None and value > limit:
            raise FabricError(
                f"{self.where}: {label} = {value!r} exceeds the limit {limit if isinstance(limit, int) else f'{limit:g}'} (see LIMITS in "
                f"rdu_compiler/fabric/spec.py); use a value a chip can have"
            )
        return value

    def get_flops_table(self) -> dict[str, int]:
        table = self._get("pcu", "flops_per_cycle")
        if not isinstance(table, dict) or not table:
            want = "a non-empty table of dtype = FLOP/cycle"
            raise self._fail("[pcu].flops_per_cycle", want, table)
        label = "[pcu.flops_per_cycle]"
        limit = LIMITS[label]
        return {k.lower(): self._bounded(f"{label}.{k}", self._positive_int(f"{label}.{k}", v), limit) for k, v in table.items()}

    def _positive_int(self, label: str, value: object) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise self._fail(label, "a positive integer", value)
        return value


def _extends_chain(name: str) -> list[str]:
    """The presets a shipped preset extends, nearest first (`extends` of each file)."""
    chain: list[str] = []
    while name in preset_names() and len(chain) <= MAX_EXTENDS:
        base = tomllib.loads(_PRESETS.joinpath(f"{name}.toml").read_text(encoding="utf-8")).get("extends")
        if not isinstance(base, str):
            break
        chain.append(base)
        name = base
    return chain


def node_preset(name: str, sockets: int) -> str:
    """The fabric to compile for when a program asks for `sockets` sockets of `name`.

    `name` itself when its node has at least `sockets` sockets, or more than one socket (a
    node preset is taken as asked for: too few sockets are refused by the caller), or it
    is not a shipped preset (a user's .toml is taken as written); for a one-socket preset
    such as "sn40l", the shipped preset with the fewest sockets, at least `sockets`, that
    extends `name` (directly or through other presets): `node_preset("sn40l", 16)` is
    "sn40l-rack16", `node_preset("sn40l", 3)` is "sn40l-node8" (as "sn40l-node8" itself
    with 3 sockets). `name` again when none does, so the caller's socket check refuses
    with its message.
    """
    if name not in preset_names() or sockets <= (have := load_fabric(name).node.sockets) or have > 1:
        return name
    best: tuple[int, str] | None = None
    for p in preset_names():
        if name not in _extends_chain(p):
            continue
        count = load_fabric(p).node.sockets
        if count >= sockets and (best is None or count < best[0]):
            best = (count, p)
    return best[1] if best else name


def node_fabric(fabric: str, tp_pp: int, sockets: int | None) -> str:
    """The fabric a compile for `sockets` sockets (default `tp_pp` = tp x pp) of `fabric`
    uses: `fabric` itself when its node holds them, else the shipped node preset that
    extends it (`node_preset`: "sn40l" with 16 sockets is "sn40l-rack16"), which the
    report's `fabric.name` then shows.

    Raises:
        RduError: `sockets` (or tp x pp) below 1.
    """
    used = sockets if sockets is not None else tp_pp
    if isinstance(used, int) and used < 1:
        raise RduError(f"sockets = {used}: a program runs on at least 1 socket; give --sockets N with N >= 1 "
                       "(or leave it out: tp x pp)")
    return node_preset(fabric, used) if isinstance(used, int) and used > 1 else fabric
