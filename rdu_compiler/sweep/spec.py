"""A sweep as data: models x fabric variants x shapes x opt levels, read from sweep.toml.

```toml
[sweep]
name = "llama-memory"              # optional, names the output

[[model]]                          # one or more; each is exactly one of:
builtin = "llama-layer"            #   a decoder layer of rdu_compiler/bench/models.py, whose
hidden = 4096                      #   LayerShape fields (hidden heads kv_heads mlp seq past)
heads = 32                         #   may be given here and varied as axes
[[model]]
file = "examples/mlp.py"           #   a model.py (model + example_inputs, or get_model())
[[model]]
onnx = "model.onnx"                #   an ONNX file

[fabric]
base = "sn40l"                     # a preset or a spec .toml (relative to sweep.toml)

[axes]                             # every combination is a job ...
"pmu.capacity_bytes" = [262144, 524288]    # "table.field" of the fabric spec
"hbm.bytes_per_s" = [1.2e12, 1.8e12]
seq = [1, 4096]                    # a LayerShape field (builtin models only)
opt_level = [0, 1]

# ... unless [[jobs]] lists the combinations to run (each a table of axis = value).
```

Errors name the file, the table and the key (`SweepSpecError`, exit status 2 in the CLI).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rdu_compiler.errors import RduError

SHAPE_FIELDS = ("hidden", "heads", "kv_heads", "mlp", "seq", "past")
BUILTINS = ("llama-layer",)


class SweepSpecError(RduError):
    """sweep.toml is malformed: the message names the file, table and key, and the fix."""


@dataclass(frozen=True)
class ModelSpec:
    """One model of a sweep: `kind` builtin/file/onnx, `source` (builtin name or path),
    `shape` (LayerShape fields given in [[model]], builtin only), `name` (for the table)."""

    kind: str
    source: str
    shape: tuple[tuple[str, int], ...] = ()
    name: str = ""


@dataclass(frozen=True)
class Job:
    """One compile: a model, the values of every axis (fabric fields, shape fields,
    opt_level), the base fabric. `key` hashes all of it with the compiler's identity."""

    index: int
    model: ModelSpec
    axes: tuple[tuple[str, Any], ...]
    fabric_base: str

    def key(self, compiler: str) -> str:
        blob = json.dumps({"model": [self.model.kind, self.model.source, self.model.shape], "axes": self.axes,
                           "fabric": self.fabric_base, "compiler": compiler}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    @property
    def opt_level(self) -> int:
        return int(dict(self.axes).get("opt_level", 1))

    def fabric_overrides(self) -> dict[str, dict[str, Any]]:
        """{table: {field: value}} for the fabric axes of this job."""
        out: dict[str, dict[str, Any]] = {}
        for k, v in self.axes:
            if "." in k:
                table, key = k.rsplit(".", 1)
                out.setdefault(table, {})[key] = v
        return out

    def shape(self) -> dict[str, int]:
        """LayerShape fields: the model's own, then this job's shape axes."""
        return {**dict(self.model.shape), **{k: int(v) for k, v in self.axes if k in SHAPE_FIELDS}}


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep.toml (see the module docstring). `jobs` is the job list."""

    name: str
    path: str
    models: tuple[ModelSpec, ...]
    fabric_base: str
    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    listed: tuple[tuple[tuple[str, Any], ...], ...] = field(default=())

    @property
    def jobs(self) -> list[Job]:
        combos = list(self.listed) if self.listed else [
            tuple(zip([k for k, _ in self.axes], values, strict=True))
            for values in itertools.product(*(vals for _, vals in self.axes))]
        out = []
        for model in self.models:
            for combo in combos:
                if model.kind != "builtin" and any(k in SHAPE_FIELDS for k, _ in combo):
                    combo = tuple((k, v) for k, v in combo if k not in SHAPE_FIELDS)  # shapes vary builtins only
                out.append(Job(len(out), model, combo, self.fabric_base))
        seen: set[tuple[Any, ...]] = set()
        unique = []
        for j in out:  # a shape axis dropped for a file model can repeat a combination
            sig = (j.model, j.axes)
            if sig not in seen:
                seen.add(sig)
                unique.append(Job(len(unique), j.model, j.axes, j.fabric_base))
        return unique


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check sweep.toml.

    Raises:
        SweepSpecError: unreadable file, bad TOML, unknown table/key, a model that is not
            exactly one of builtin/file/onnx, an axis that is not a non-empty list, a fabric
            field the spec does not have, a shape axis without a builtin model.
    """
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise SweepSpecError(f"{p}: cannot read the sweep spec ({e.strerror or e}); check the path") from e
    except tomllib.TOMLDecodeError as e:
        raise SweepSpecError(f"{p}: invalid TOML ({e}); fix the syntax") from e
    where = str(p)
    unknown = set(doc) - {"sweep", "model", "fabric", "axes", "jobs"}
    if unknown:
        raise SweepSpecError(f"{where}: unknown table [{sorted(unknown)[0]}]; use [sweep], [[model]], [fabric], [axes], [[jobs]]")
    models = tuple(_model(m, i, where, p.parent) for i, m in enumerate(_list(doc, "model", where)))
    if not models:
        raise SweepSpecError(f"{where}: no [[model]]; add at least one (builtin, file or onnx)")
    base = str(doc.get("fabric", {}).get("base", "sn40l"))
    extra = set(doc.get("fabric", {})) - {"base"}
    if extra:
        raise SweepSpecError(f"{where}: unknown key [fabric].{sorted(extra)[0]}; [fabric] has only base (vary fields in [axes])")
    base = _resolve(base, p.parent)
    axes_doc = doc.get("axes", {})
    if not isinstance(axes_doc, dict):
        raise SweepSpecError(f"{where}: [axes] must be a table of name = [values]")
    axes = []
    for name, values in axes_doc.items():
        if not isinstance(values, list) or not values:
            raise SweepSpecError(f"{where}: [axes].{name} must be a non-empty list of values, got {values!r}")
        _check_axis(name, values, where, base, models)
        axes.append((name, tuple(values)))
    listed = []
    for i, combo in enumerate(_list(doc, "jobs", where)):
        for name, value in combo.items():
            _check_axis(name, [value], f"{where} [[jobs]] #{i + 1}", base, models)
        listed.append(tuple(sorted(combo.items())))
    name = str(doc.get("sweep", {}).get("name", p.stem))
    return SweepSpec(name, where, models, base, tuple(axes), tuple(listed))


def _list(doc: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise SweepSpecError(f"{where}: {key} must be an array of tables, written [[{key}]]")
    return value


def _resolve(source: str, folder: Path) -> str:
    from rdu_compiler.fabric import preset_names

    if source in preset_names() or Path(source).is_absolute():
        return source
    return str((folder / source).resolve())


def _model(m: dict[str, Any], i: int, where: str, folder: Path) -> ModelSpec:
    kinds = [k for k in ("builtin", "file", "onnx") if k in m]
    if len(kinds) != 1:
        raise SweepSpecError(f"{where}: [[model]] #{i + 1} needs exactly one of builtin, file, onnx; it has {kinds or 'none'}")
    kind = kinds[0]
    allowed = {kind, "name", *(SHAPE_FIELDS if kind == "builtin" else ())}
    extra = set(m) - allowed
    if extra:
        raise SweepSpecError(f"{where}: [[model]] #{i + 1}: unknown key {sorted(extra)[0]!r}; allowed: {', '.join(sorted(allowed))}")
    source = str(m[kind])
    if kind == "builtin" and source not in BUILTINS:
        raise SweepSpecError(f"{where}: [[model]] #{i + 1}: builtin {source!r} is not one of {', '.join(BUILTINS)}")
    if kind != "builtin":
        path = Path(source) if Path(source).is_absolute() else folder / source
        if not path.is_file():
            raise SweepSpecError(f"{where}: [[model]] #{i + 1}: no file {path}; fix the path (relative to the sweep file)")
        source = str(path.resolve())
    shape = tuple(sorted((k, int(v)) for k, v in m.items() if k in SHAPE_FIELDS))
    return ModelSpec(kind, source, shape, str(m.get("name", Path(source).stem if kind != "builtin" else source)))


def _check_axis(name: str, values: list[Any], where: str, base: str, models: tuple[ModelSpec, ...]) -> None:
    if name == "opt_level":
        if any(v not in (0, 1) for v in values):
            raise SweepSpecError(f"{where}: opt_level values must be 0 or 1, got {values}")
        return
    if name in SHAPE_FIELDS:
        if not any(m.kind == "builtin" for m in models):
            raise SweepSpecError(f"{where}: shape axis {name!r} needs a builtin model (file and onnx models fix their shapes)")
        if any(not isinstance(v, int) or v < 0 for v in values):
            raise SweepSpecError(f"{where}: shape axis {name!r} takes non-negative integers, got {values}")
        return
    if "." not in name:
        raise SweepSpecError(f"{where}: unknown axis {name!r}: use opt_level, a shape field ({', '.join(SHAPE_FIELDS)}) "
                             "or a fabric field as \"table.field\" (e.g. \"pmu.capacity_bytes\")")
    from rdu_compiler.fabric.spec import _SCHEMA

    table, key = name.rsplit(".", 1)
    if table not in _SCHEMA or key not in _SCHEMA[table] or _SCHEMA[table][key] == "table":
        raise SweepSpecError(f"{where}: axis {name!r} is not a field of a fabric spec (see rdu_compiler/fabric/spec.py)")


def layer_shape(shape: dict[str, int]) -> Any:
    """A bench.models.LayerShape from `shape` (unknown keys were refused by load_spec)."""
    from rdu_compiler.bench.models import LayerShape

    names = {f.name for f in fields(LayerShape)}
    return LayerShape(**{k: v for k, v in shape.items() if k in names})
