"""Design-space sweeps (issue 17): many compiles of models x fabric variants x shapes, on
one machine or a Ray cluster, resumable, one row per job.

    from rdu_compiler import sweep
    spec = sweep.load_spec("sweep.toml")
    rows = sweep.run(spec, executor="process")      # or "serial", "ray"
"""

from rdu_compiler.sweep.run import EXECUTORS, SweepError, run
from rdu_compiler.sweep.spec import Job, ModelSpec, SweepSpec, SweepSpecError, load_spec

__all__ = ["EXECUTORS", "Job", "ModelSpec", "SweepError", "SweepSpec", "SweepSpecError", "load_spec", "run"]
