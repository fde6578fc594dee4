"""ONNX backend node tests on the rdu emulator: run a case, classify it, run many in workers.

Each case of ``onnx.backend.test.loader.load_model_tests(kind="node")`` is compiled with
``rdu_compiler.compile_onnx`` for ``sn40l`` (-O1), run on the emulator with every data set of
the case, and compared with the expected outputs at the case's tolerances (the suite's
``rtol=1e-3, atol=1e-7``; same shape and dtype required, NaN equals NaN, as ONNX's own
runner). It ends in exactly one class:

- ``pass``
- ``unsupported_importer``: torch-mlir's ONNX importer, or its lowering to linalg, refused
  the model (``FrontendError``).
- ``unsupported_conversion``: our passes (``rdu-convert-linalg`` ...) or the emulator
  refused the program, naming the op (``CompileError`` / ``EmulatorError``).
- ``wrong_numbers``: it ran, but an output differs (value, shape or dtype).
- ``crash``: any other exception, or the per-case timeout.

:func:`run_cases` runs cases on an executor of `rdu_compiler.parallel` (forked worker
processes by default, or Ray) with a per-case timeout (a worker that times out is killed
and replaced). ``python -m`` is not needed: the refresh script
and the pytest test import this file by path.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import sys
import time
import traceback
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
#: torch-mlir hanging on a model counts as the importer's refusal once it takes this long
#: (the case itself may take CASE_TIMEOUT_S).
os.environ.setdefault("RDU_ONNX_LOWERING_TIMEOUT", "60")
EXPECTED_JSON = HERE / "expected.json"
CLASSES = ("pass", "unsupported_importer", "unsupported_conversion", "wrong_numbers", "crash")
FABRIC = "sn40l"
OPT_LEVEL = 1
#: Seconds one case may take (compile + every data set) before it counts as a crash.
CASE_TIMEOUT_S = 120.0
#: The CI sample: this many cases per op type (the first ones by name).
SAMPLE_PER_OP = 2

_CASES: dict[str, Any] | None = None


@dataclass
class Outcome:
    """How one case ended: its class, a one-line detail, and seconds taken."""

    name: str
    cls: str
    detail: str = ""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"class": self.cls, "detail": self.detail}


# ------------------------------------------------------------------------------ cases


def load_cases() -> dict[str, Any]:
    """All node test cases, by name (built in memory by onnx; ~7 s, cached per process)."""
    global _CASES
    if _CASES is None:
        from onnx.backend.test.loader import load_model_tests

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with np.errstate(all="ignore"):
                cases = load_model_tests(kind="node")
        _CASES = {c.name: c for c in sorted(cases, key=lambda c: c.name)}
    return _CASES


def op_types(case: Any) -> set[str]:
    """The op types of the case's top-level graph."""
    return {n.op_type for n in case.model.graph.node}


def primary_op(case: Any) -> str:
    """The op type the case tests: its graph's single op, else the op its name is about."""
    ops = op_types(case)
    if len(ops) == 1:
        return next(iter(ops))
    return "(" + ",".join(sorted(ops)) + ")"


def sample(cases: dict[str, Any], per_op: int = SAMPLE_PER_OP) -> list[str]:
    """The fixed CI sample: for every op type of the suite, the first ``per_op`` cases (by
    name) whose graph uses it, non-``_expanded`` cases first. Deterministic."""
    by_op: dict[str, list[str]] = defaultdict(list)
    for name in sorted(cases):
        for op in op_types(cases[name]):
            by_op[op].append(name)
    chosen: set[str] = set()
    for op in sorted(by_op):
        names = sorted(by_op[op], key=lambda n: ("_expanded" in n, n))
        chosen.update(names[:per_op])
    return sorted(chosen)


# ------------------------------------------------------------------------------ one case


def _compare(got: list[np.ndarray], want: list[np.ndarray], rtol: float, atol: float) -> str | None:
    """None if equal at the suite's tolerances, else what differs."""
    if len(got) != len(want):
        return f"{len(got)} outputs, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if isinstance(w, list | tuple):
            return f"output {i} is a sequence (not supported)"
        w = np.asarray(w)
        g = np.asarray(g)
        if g.shape != w.shape:
            return f"output {i}: shape {g.shape}, expected {w.shape}"
        if w.dtype == object:
            if not np.array_equal(g, w):
                return f"output {i}: values differ"
            continue
        if g.dtype != w.dtype:
            return f"output {i}: dtype {g.dtype}, expected {w.dtype}"
        r = rtol
        if w.dtype.name == "bfloat16":
            r = max(rtol, 2**-6)
            g, w = g.astype(np.float32), w.astype(np.float32)
        try:
            np.testing.assert_allclose(g, w, rtol=r, atol=atol)
        except AssertionError as e:
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            info = "; ".join(ln for ln in lines if ln.startswith(("Mismatched", "Max absolute", "Max relative")))
            return f"output {i}: {info or 'values differ'}"
    return None


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def classify(case: Any) -> Outcome:
    """Compile, run and compare one case; never raises."""
    from rdu_compiler.errors import CompileError, EmulatorError
    from rdu_compiler.frontend.errors import FrontendError

    t0 = time.perf_counter()
    name = case.name
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            cls, detail = _run(case)
    except FrontendError as e:
        cls, detail = "unsupported_importer", _one_line(str(e))
    except (CompileError, EmulatorError) as e:
        cls, detail = "unsupported_conversion", _one_line(_conversion_detail(e))
    except Exception as e:  # noqa: BLE001 - every other exception is a crash, by definition
        tb = traceback.extract_tb(e.__traceback__)
        where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
        cls, detail = "crash", _one_line(f"{type(e).__name__}{where}: {e}")
    return Outcome(name, cls, detail, time.perf_counter() - t0)


def _conversion_detail(e: Exception) -> str:
    text = str(e)
    return text.split("\nReproduce with:", 1)[0]


def _value(x: Any) -> Any:
    """A data-set value as numpy (TensorProto for bfloat16/float8/..., lists for sequences)."""
    import onnx
    from onnx import numpy_helper

    if isinstance(x, onnx.TensorProto):
        return numpy_helper.to_array(x)
    if isinstance(x, list | tuple):
        return [_value(v) for v in x]
    return x


def _run(case: Any) -> tuple[str, str]:
    import rdu_compiler
    from rdu_compiler.frontend.onnx.load import compile_time_inputs

    if not case.data_sets:
        return "crash", "the case has no data set"
    data_sets = [([_value(v) for v in ins], [_value(v) for v in outs]) for ins, outs in case.data_sets]
    inputs0, _ = data_sets[0]
    graph = case.model.graph
    inits = {i.name for i in graph.initializer}
    names = [vi.name for vi in graph.input if vi.name not in inits]
    model = case.model
    if len(inputs0) < len(names):  # optional inputs left out at the end: drop them
        import onnx

        model = onnx.ModelProto()
        model.CopyFrom(case.model)
        dropped = set(names[len(inputs0):])
        keep = [vi for vi in model.graph.input if vi.name not in dropped]
        del model.graph.input[:]
        model.graph.input.extend(keep)
        names = names[: len(inputs0)]
    shapes = {n: tuple(np.shape(a)) for n, a in zip(names, inputs0, strict=True) if not isinstance(a, list)}
    # Inputs an op needs at compile time (a Reshape's shape, a Slice's starts) are bound to
    # the data set's values, as a deployed model has them as constants.
    frozen = set(compile_time_inputs(model))
    sink = io.StringIO()
    programs: dict[tuple[Any, ...], Any] = {}
    with redirect_stdout(sink), redirect_stderr(sink):
        for inputs, expected in data_sets:
            values = dict(zip(names, inputs, strict=True))
            key = tuple(pickle.dumps(values[n]) for n in sorted(frozen))
            if key not in programs:
                programs[key] = rdu_compiler.compile_onnx(
                    model, fabric=FABRIC, opt_level=OPT_LEVEL,
                    input_shapes={n: s for n, s in shapes.items() if n not in frozen},
                    constant_inputs={n: values[n] for n in frozen},
                )
            program = programs[key]
            got = program.run(*[values[n] for n in names if n not in frozen])
            problem = _compare(got, list(expected), case.rtol, case.atol)
            if problem:
                return "wrong_numbers", problem
    return "pass", ""


# ------------------------------------------------------------------------------ workers


def classify_name(name: str) -> tuple[str, str, float]:
    """`classify` the case called `name` (loading the suite once per process): the job of
    `run_cases`' executor."""
    out = classify(load_cases()[name])
    return out.cls, out.detail, out.seconds


def run_cases(
    names: Iterable[str],
    workers: int = 2,
    timeout_s: float = CASE_TIMEOUT_S,
    on_result: Callable[[Outcome], None] | None = None,
    executor: str = "process",
    address: str | None = None,
) -> dict[str, Outcome]:
    """Classify cases on `executor` (`rdu_compiler.parallel`, the executor of rdu-sweep:
    "process" forks `workers` processes, "ray" runs Ray tasks on a local runtime or the
    cluster at `address`), each case under ``timeout_s``.

    A case whose worker exceeds the timeout or dies is a crash (the worker is replaced).
    Ray workers import this file by name, so its folder is put on their PYTHONPATH.
    """
    from rdu_compiler.parallel import map_unordered

    todo = list(names)
    if executor == "process":
        load_cases()  # once in the parent; forked workers share it
        # Import the compiler in the parent too: workers start fast and all run the same code.
        import torch_mlir.extras.onnx_importer  # noqa: F401

        import rdu_compiler.api  # noqa: F401
        import rdu_compiler.frontend.onnx.importer  # noqa: F401
        import rdu_compiler.runtime.emulator  # noqa: F401
    elif executor == "ray":
        paths = [str(HERE), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    results: dict[str, Outcome] = {}
    for res in map_unordered(classify_name, todo, executor, workers=workers, address=address,
                             timeout_s=timeout_s, start_method="fork"):
        name = todo[res.index]
        if res.error:
            err = res.error if res.error.startswith(("timeout", "worker died")) else f"harness: {res.error}"
            out = Outcome(name, "crash", err, res.seconds)
        else:
            cls, detail, secs = res.value
            out = Outcome(name, cls, detail, secs)
        results[name] = out
        if on_result:
            on_result(out)
    return results


# ------------------------------------------------------------------------------ expected


def load_expected(path: Path = EXPECTED_JSON) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def expected_class(expected: dict[str, Any], name: str) -> str:
    entry = expected["cases"].get(name)
    return entry["class"] if entry else "pass"


def summarize(results: dict[str, Outcome]) -> dict[str, int]:
    counts = {c: 0 for c in CLASSES}
    for out in results.values():
        counts[out.cls] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    """Classify the named cases (or a regex) and print one line each: a debugging aid."""
    args = list(sys.argv[1:] if argv is None else argv)
    cases = load_cases()
    names = [n for n in cases if any(re.fullmatch(a, n) for a in args)] if args else []
    for n in names:
        out = classify(cases[n])
        print(f"{n}: {out.cls} ({out.seconds:.2f} s) {out.detail}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
