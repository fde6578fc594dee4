"""Online training on the emulator against eager PyTorch (issue 16): K steps of
examples/online_training.py's small DLRM on the synthetic Zipf stream (rdu_compiler.train.stream,
benchmarks/embedding_auc.py's task with F sparse and D dense features).

Reports: the numbers after K steps against eager (rel L2 of dense parameters, table rows,
losses; same IDs present), the bytes each sync sends with touched-row sync and with a full
copy, for each `--sync-every`, and the median wall time of a step (compiled step on the
emulator; the table's part; eager's forward, loss, backward and dense step, the same work as
the compiled step; eager's whole step, whose table is a dense parameter of `capacity` rows
stepped whole), with the machine's load.

    python benchmarks/online_training_vs_eager.py [--steps 40] [--batch 256] [--sync-every 1,10]
        [--optimizer adagrad] [--vocab 20000] [--zipf 1.1] [--threads 1]
"""

from __future__ import annotations

import argparse
import os

_ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
_ap.add_argument("--steps", type=int, default=40)
_ap.add_argument("--batch", type=int, default=256)
_ap.add_argument("--sync-every", default="1,10")
_ap.add_argument("--optimizer", choices=["adagrad", "sgd"], default="adagrad")
_ap.add_argument("--vocab", type=int, default=20_000)
_ap.add_argument("--zipf", type=float, default=1.1)
_ap.add_argument("--expiry", type=int, default=20)
_ap.add_argument("--threshold", type=int, default=2)
_ap.add_argument("--threads", type=int, default=1)
ARGS = _ap.parse_args()
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy / torch load
    os.environ[_v] = str(ARGS.threads)

import importlib.util  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from rdu_compiler.embedding import SGD, Adagrad  # noqa: E402
from rdu_compiler.train import EagerOnlineTrainer, OnlineTrainer  # noqa: E402
from rdu_compiler.train.stream import zipf_stream  # noqa: E402

_spec = importlib.util.spec_from_file_location("online_training_example",
                                               Path(__file__).resolve().parents[1] / "examples" / "online_training.py")
assert _spec and _spec.loader
ex: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ex)


def main() -> None:
    a = ARGS
    torch.set_num_threads(a.threads)  # one thread each side by default: eager's 2 OpenMP threads on a loaded
    # machine spent 120 ms a step waiting for each other (1.1 ms with one)
    opt = Adagrad(lr=0.1, initial_accumulator_value=0.1) if a.optimizer == "adagrad" else SGD(lr=0.2)
    periods = [int(x) for x in a.sync_every.split(",")]
    stream = zipf_stream(a.steps, a.batch, ex.FEATURES, ex.DENSE, vocab=a.vocab, zipf=a.zipf, seed=1)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    first = OnlineTrainer(ex.SmallDLRM(), ex.make_table(opt, a.expiry, a.threshold), sync_every=periods[0])
    first.step(stream[0])  # compiles
    compile_s = time.perf_counter() - t0 - first.history[0].step_s - first.history[0].table_s
    assert first.compiled is not None
    trainers = [first] + [OnlineTrainer(ex.SmallDLRM(), ex.make_table(opt, a.expiry, a.threshold), sync_every=n,
                                        compiled=first.compiled) for n in periods[1:]]
    eager = EagerOnlineTrainer(ex.SmallDLRM(), ex.make_table(opt, a.expiry, a.threshold), capacity=1 << 13)
    eager_s = []
    for i, batch in enumerate(stream):
        for tr in trainers if i else trainers[1:]:
            tr.step(batch)
        t = time.perf_counter()
        eager.step(batch.ids, batch.dense, batch.labels, batch.now)
        eager_s.append(time.perf_counter() - t)
    hist = first.history[1:]  # the first step's times include the compile's warm-up
    out = {
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 cwd=Path(__file__).parent).stdout.strip(),
        "args": vars(a), "load_before_after": [round(load0[0], 1), round(os.getloadavg()[0], 1)],
        "compile_s": round(compile_s, 1),
        "chip_step": {k: first.compiled.program.report["totals"][k]  # the cost model's sn40l figures
                      for k in ("estimated_s", "launch_s", "kernels", "sections", "flops", "hbm_bytes")},
        "vs_eager": ex.compare(first, eager),
        "ids_present": len(first.table), "admitted": sum(r.admitted for r in first.history),
        "rejected": sum(r.rejected for r in first.history), "expired": sum(r.expired for r in first.history),
        "median_step_s": {"emulator_step": float(np.median([r.step_s for r in hist])),
                          "table": float(np.median([r.table_s for r in hist])),
                          "eager_model": float(np.median(eager.model_s[1:])),
                          "eager_step": float(np.median(eager_s[1:]))},
        "sync": [{"sync_every": tr.sync_every, "syncs": len(tr.syncs),
                  "mean_rows": float(np.mean([s.rows for s in tr.syncs])) if tr.syncs else 0.0,
                  "mean_row_bytes": float(np.mean([s.row_bytes for s in tr.syncs])) if tr.syncs else 0.0,
                  "mean_full_copy_row_bytes": float(np.mean([s.full_row_bytes for s in tr.syncs])) if tr.syncs else 0.0,
                  "dense_bytes": tr.syncs[0].dense_bytes if tr.syncs else 0,
                  "total_bytes": sum(s.bytes for s in tr.syncs),
                  "total_full_copy_bytes": sum(s.full_row_bytes + s.dense_bytes for s in tr.syncs)} for tr in trainers],
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
