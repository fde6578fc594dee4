"""Run one sweep job: build its fabric variant and model, compile, summarise as a row.

A row is a flat dict: the job's key and inputs (model, every axis value), then the
figures of `rdu_compiler.bench.level_figures` (estimated_s, roofline_fraction, binding,
hbm_bytes, ddr_bytes, pcu/pmu utilization, sections, kernels, compile_s), or `error` (one
paragraph) for a job that failed. `run_job` never raises for a bad job: a failed job is a
row, never a stopped sweep.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rdu_compiler.sweep.spec import Job, layer_shape

#: The figures a row holds, in column order (from bench.LevelResult).
FIGURES = ("estimated_s", "roofline_s", "roofline_bound", "roofline_fraction", "binding", "sections", "kernels",
           "hbm_bytes", "ddr_bytes", "pcu_utilization", "pmu_utilization", "compile_s")


def compiler_id() -> str:
    """The compiler's identity for job keys (`rdu_compiler.version.compiler_id`)."""
    from rdu_compiler.version import compiler_id as _id

    return _id()


def fabric_for(job: Job, folder: Path) -> str:
    """The fabric to compile for: the base, or a spec file `extends`-ing it with this job's
    fabric axes (written once under `folder`, named by its content's hash)."""
    overrides = job.fabric_overrides()
    if not overrides:
        return job.fabric_base
    lines = [f"extends = {json.dumps(job.fabric_base)}"]
    for table, body in sorted(overrides.items()):
        lines.append(f"[{table}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in sorted(body.items())]
    text = "\n".join(lines) + "\n"
    path = folder / f"fabric-{hashlib.sha256(text.encode()).hexdigest()[:16]}.toml"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{id(job)}")
        tmp.write_text(text)
        tmp.replace(path)  # atomic: parallel workers may write the same variant
    return str(path)


def _model(job: Job) -> tuple[Any, tuple[Any, ...]]:
    m = job.model
    if m.kind == "builtin":
        from rdu_compiler.bench.models import llama_layer

        return llama_layer(layer_shape(job.shape()))
    from rdu_compiler.frontend.torch.model_file import load_model_file

    return load_model_file(m.source)


def run_job(job: Job, compiler: str, fabric_dir: str) -> dict[str, Any]:
    """Compile `job` and return its row (see the module docstring)."""
    from rdu_compiler import api
    from rdu_compiler.bench import level_figures
    from rdu_compiler.errors import RduError

    row = _inputs_row(job, compiler)
    t0 = time.perf_counter()
    try:
        fabric = fabric_for(job, Path(fabric_dir))
        if job.model.kind == "onnx":
            program = api.compile_onnx(job.model.source, fabric=fabric, opt_level=job.opt_level)
        else:
            model, inputs = _model(job)
            program = api.compile(model, inputs, fabric=fabric, opt_level=job.opt_level)
        figures = asdict(level_figures(program.report, job.opt_level, time.perf_counter() - t0))
        row.update({k: figures[k] for k in FIGURES})
        row["error"] = ""
    except RduError as e:
        row.update({k: None for k in FIGURES})
        row["error"] = " ".join(str(e).split())
    except Exception as e:  # noqa: BLE001 - a crash is a row too; the sweep goes on
        row.update({k: None for k in FIGURES})
        row["error"] = f"internal error {type(e).__name__}: {' '.join(str(e).split())}"
    return row


def _inputs_row(job: Job, compiler: str) -> dict[str, Any]:
    row: dict[str, Any] = {"key": job.key(compiler), "index": job.index, "model": job.model.name,
                           **{k: v for k, v in job.axes}}
    if job.model.kind == "builtin":
        row.update({f"shape.{k}": v for k, v in job.shape().items()})
    return row


def error_row(job: Job, compiler: str, error: str) -> dict[str, Any]:
    """The row of a job that never returned one (its worker died or timed out)."""
    return {**_inputs_row(job, compiler), **dict.fromkeys(FIGURES), "error": error}
