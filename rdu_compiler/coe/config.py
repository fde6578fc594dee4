"""coe.toml: the router, the experts, the node and the request mix of a CoE study.

```toml
[node]
fabric = "sn40l-node8"     # fabric preset or spec path (relative to this file)
sockets = 8                # optional: default the node's sockets (also the TP degree)

[router]
shape = "llama2-7b"        # a built-in shape (rdu_compiler.coe.llama.BUILTIN_SHAPES) ...
# model = "router.py"      # ... or a model.py (model + example_inputs), relative to this file

[experts]
shape = "llama2-7b"        # with count = N copies of the shape (different weights, same size)
count = 150
# models = ["a.py", "b.py"]

[requests]
count = 200                # requests to simulate (--requests overrides)
distribution = "uniform"   # uniform | zipf (with zipf_s) | weights (with weights = [...])
# trace = [0, 3, 3, 1]     # expert of each request, in order (instead of a distribution)
prompt = 512               # tokens per sequence
output = 20                # output tokens per sequence
batch = 1                  # sequences per request (all to the same expert)
seed = 0
```
The router and the experts are either all built-in shapes or all model files.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rdu_compiler.coe.llama import BUILTIN_SHAPES
from rdu_compiler.coe.mix import DISTRIBUTIONS
from rdu_compiler.errors import RduError

KNOWN = {
    "node": {"fabric", "sockets"},
    "router": {"shape", "model"},
    "experts": {"shape", "count", "models"},
    "requests": {"count", "distribution", "zipf_s", "weights", "trace", "prompt", "output", "batch", "seed"},
}


class CoEConfigError(RduError):
    """coe.toml is unreadable or a field is missing or wrong (the message names file and field)."""


@dataclass(frozen=True)
class CoEConfig:
    """A parsed coe.toml; paths are resolved against the file's folder."""

    path: str
    fabric: str
    sockets: int | None
    router_shape: str | None
    router_model: str | None
    expert_shape: str | None
    expert_count: int
    expert_models: tuple[str, ...]
    requests: int
    distribution: str
    zipf_s: float
    weights: tuple[float, ...] | None
    trace: tuple[int, ...] | None
    prompt: int
    output: int
    batch: int
    seed: int
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def builtin(self) -> bool:
        """Whether router and experts are built-in shapes (else model files)."""
        return self.router_shape is not None


def load_config(path: str | os.PathLike[str]) -> CoEConfig:
    """Read and check a coe.toml (format in the module docstring).

    Raises:
        CoEConfigError: the file is missing or not TOML; an unknown table or field; a missing
            or mistyped field; a shape that is not built in; router and experts mixing shapes
            and model files; a model file that does not exist.
    """
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise CoEConfigError(f"{p}: no such file; give the path of a coe.toml (see rdu_compiler/coe/config.py)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CoEConfigError(f"{p}: cannot read it ({e}); give a readable UTF-8 coe.toml") from None
    except tomllib.TOMLDecodeError as e:
        raise CoEConfigError(f"{p}: not valid TOML ({e}); fix the syntax") from None
    r = _Reader(doc, p)
    for table, body in doc.items():
        if table not in KNOWN or not isinstance(body, dict):
            raise CoEConfigError(f"{p}: unknown table [{table}]; the tables are {', '.join(f'[{t}]' for t in KNOWN)}")
        for key in body:
            if key not in KNOWN[table]:
                raise CoEConfigError(f"{p}: unknown field [{table}].{key}; [{table}] has {', '.join(sorted(KNOWN[table]))}")
    fabric = r.get("node", "fabric", str)
    if fabric.endswith(".toml"):
        fabric = str(p.parent / fabric)
    router_shape, router_model = r.one_of("router", "shape", "model")
    expert_shape, expert_models = r.one_of("experts", "shape", "models")
    if router_model is not None and not isinstance(router_model, str):
        raise CoEConfigError(f"{p}: [router].model = {router_model!r} should be a str (a model.py path)")
    if (router_shape is None) != (expert_shape is None):
        raise CoEConfigError(f"{p}: [router] and [experts] must both be built-in shapes or both model files; "
                             "set [router].shape and [experts].shape, or [router].model and [experts].models")
    for table, shape in (("router", router_shape), ("experts", expert_shape)):
        if shape is not None and shape not in BUILTIN_SHAPES:
            raise CoEConfigError(f"{p}: [{table}].shape = {shape!r} is not built in; use one of {', '.join(BUILTIN_SHAPES)}")
    models: tuple[str, ...] = ()
    if expert_models is not None:
        if not isinstance(expert_models, list) or not expert_models or not all(isinstance(m, str) for m in expert_models):
            raise CoEConfigError(f"{p}: [experts].models must be a non-empty list of model.py paths")
        models = tuple(str(p.parent / m) for m in expert_models)
    for f in ([str(p.parent / router_model)] if isinstance(router_model, str) else []) + list(models):
        if not Path(f).is_file():
            raise CoEConfigError(f"{p}: model file {f} does not exist; fix the path (relative to {p.parent})")
    count = r.get("experts", "count", int, None if expert_shape is not None else len(models))
    if expert_shape is None and "count" in doc.get("experts", {}):
        raise CoEConfigError(f"{p}: [experts].count goes with [experts].shape; with models the count is their number")
    trace = r.get("requests", "trace", list, None)
    if trace is not None and (not all(isinstance(t, int) and not isinstance(t, bool) for t in trace) or not trace):
        raise CoEConfigError(f"{p}: [requests].trace must be a non-empty list of expert indices (integers)")
    if trace is not None and not all(0 <= t < count for t in trace):
        raise CoEConfigError(f"{p}: [requests].trace names experts outside 0..{count - 1}; fix the trace")
    dist = r.get("requests", "distribution", str, "uniform")
    if dist not in DISTRIBUTIONS:
        raise CoEConfigError(f"{p}: [requests].distribution = {dist!r}; use one of {', '.join(DISTRIBUTIONS)}")
    weights = r.get("requests", "weights", list, None)
    if weights is not None:
        if len(weights) != count or not all(isinstance(w, int | float) and w >= 0 for w in weights) or sum(weights) <= 0:
            raise CoEConfigError(f"{p}: [requests].weights must be {count} non-negative numbers with a positive sum")
    if dist == "weights" and weights is None:
        raise CoEConfigError(f"{p}: [requests].distribution = 'weights' needs [requests].weights")
    return CoEConfig(
        str(p), fabric, r.get("node", "sockets", int, None), router_shape,
        str(p.parent / router_model) if isinstance(router_model, str) else None, expert_shape, count, models,
        r.get("requests", "count", int, len(trace) if trace else 100), dist, r.get("requests", "zipf_s", float, 1.0),
        tuple(float(w) for w in weights) if weights is not None else None, tuple(trace) if trace is not None else None,
        r.get("requests", "prompt", int, 512), r.get("requests", "output", int, 20), r.get("requests", "batch", int, 1),
        r.get("requests", "seed", int, 0), doc)


_MISSING = object()


class _Reader:
    def __init__(self, doc: dict[str, Any], path: Path):
        self.doc, self.path = doc, path

    def get(self, table: str, key: str, kind: type, default: Any = _MISSING) -> Any:
        body = self.doc.get(table, {})
        if key not in body:
            if default is _MISSING:
                raise CoEConfigError(f"{self.path}: missing [{table}].{key}; add it (see rdu_compiler/coe/config.py)")
            return default
        value = body[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CoEConfigError(f"{self.path}: [{table}].{key} = {value!r} should be a {kind.__name__}")
        if kind is int and value < (0 if key == "seed" else 1):
            raise CoEConfigError(f"{self.path}: [{table}].{key} = {value} must be at least {0 if key == 'seed' else 1}")
        return value

    def one_of(self, table: str, a: str, b: str) -> tuple[Any, Any]:
        body = self.doc.get(table, {})
        if (a in body) == (b in body):
            raise CoEConfigError(f"{self.path}: [{table}] needs exactly one of {a} and {b}")
        kind_a = str
        return (self.get(table, a, kind_a) if a in body else None, body.get(b))
