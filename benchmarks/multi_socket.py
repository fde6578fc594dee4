"""Llama-3.1-8B decode (BF16, batch 1, 8K context) on 1, 8 and 16 SN40L sockets, with and
without kernel looping: predicted output tokens/s/user and where the time goes (issue 13).

AN ESTIMATE, NOT THE SHARDING PASS: there is no `rdu-shard` yet. Each socket's program is
the Megatron-TP shard of one layer compiled from its shape (`coe.llama.tp_layer`: heads,
KV heads and MLP columns divided by tp; with tp = 16 > 8 KV heads each socket keeps one KV
head, replicated on two sockets), costed by the cost model on one socket; the two
all-reduces per layer come from `cost.collectives` on the node's spec, the node's `sync_s`
is paid at every layer call, and the LM head's shard is read at the socket's HBM bandwidth
(`coe.llama.rdu_tp_step_s`). Kernel looping (Koeplinger et al., arXiv 2410.23668): the 32
layer calls become one call with a pipelined outer loop, so the sync and each section's
program load are paid once per step instead of once per layer (argument loads stay per
layer):

    step = L (layer - looped program loads + 2 all-reduce) + sync + program loads + LM head

Per step it reports the HBM stream per socket at HBM bandwidth (the bound for decode), the
all-reduce time, sync, launch, and tokens/s = 1 / step; beside SambaNova's 1042 tokens/s/user
at 16 sockets ([P], ../shared/reference/workloads.md). The hop latency and link bandwidth of
the inter-RDU network are not published: `--sweep` reruns the 16-socket case over them.

    python benchmarks/multi_socket.py [--sweep] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rdu_compiler.api import _fabric
from rdu_compiler.coe.llama import LLAMA31_8B, rdu_tp_step_s
from rdu_compiler.cost.collectives import all_reduce

CONTEXT = 8192
PAPER_16 = 1042.0  # tokens/s/user, Llama 3.1 8B, 16 sockets [P]
CASES = (("sn40l", 1), ("sn40l-node8", 8), ("sn40l-rack16", 16))


def step(fabric: str, tp: int, looping: bool) -> dict[str, float]:
    spec = LLAMA31_8B
    fab = _fabric(fabric)
    r = rdu_tp_step_s(spec, fabric, tp, seq=1, past=CONTEXT, batch=1)
    sections = r["sections"]  # launches per layer call
    load = fab.program_load_s * sections
    layers = spec.layers
    if looping:
        total = layers * (r["layer_s"] - load + 2 * r["all_reduce_s"]) + r["sync_s"] + load + r["lm_head_s"]
        sync, launch = r["sync_s"], load + layers * fab.argument_load_s * sections
    else:
        total = r["step_s"]
        sync, launch = layers * r["sync_s"], layers * fab.launch_overhead_s * sections
    stream = (spec.streamed_bytes / tp + spec.kv_bytes(CONTEXT) / min(tp, spec.kv_heads)) / fab.hbm.bytes_per_s
    return {"fabric": fabric, "tp": tp, "kernel_looping": looping, "step_s": total, "tokens_per_s": 1 / total,
            "hbm_stream_s": stream, "all_reduce_s": layers * 2 * r["all_reduce_s"], "sync_s": sync,
            "launch_s": launch, "layer_program_s": r["layer_s"], "hbm_roofline_share": stream / total}


def sweep_16(topologies: list[str], hops: list[float], links: list[float]) -> list[dict[str, float | str]]:
    """The 16-socket looped case over topology x hop latency x link bandwidth (spec variants)."""
    rows: list[dict[str, float | str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for topo in topologies:
            for hop in hops:
                for link in links:
                    path = Path(tmp) / f"rack-{topo}-{hop}-{link}.toml"
                    path.write_text(f'extends = "sn40l-rack16"\n[sockets]\ntopology = "{topo}"\n'
                                    f'hop_latency_s = {hop}\np2p_bytes_per_s = {link}\n')
                    r = step(str(path), 16, looping=True)
                    ar = all_reduce(_fabric(str(path)).node, LLAMA31_8B.act_bytes(1, 1), group=16)
                    rows.append({"topology": topo, "hop_latency_s": hop, "link_bytes_per_s": link,
                                 "tokens_per_s": r["tokens_per_s"], "all_reduce_s": r["all_reduce_s"],
                                 "one_all_reduce_s": ar.seconds, "algorithm": ar.algorithm})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", action="store_true", help="also sweep hop latency x link bandwidth at 16 sockets")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    t0 = time.perf_counter()
    rows = [step(f, tp, loop) for f, tp in CASES for loop in (False, True)]
    print(f"{'fabric':14} {'tp':>3} {'loop':>5} {'tok/s':>8} {'step ms':>8} {'HBM ms':>7} {'AR ms':>7} {'sync ms':>7} {'launch ms':>9} {'HBM share':>9}")
    for r in rows:
        print(f"{r['fabric']:14} {r['tp']:3d} {str(r['kernel_looping']):>5} {r['tokens_per_s']:8.0f} {r['step_s'] * 1e3:8.3f} "
              f"{r['hbm_stream_s'] * 1e3:7.3f} {r['all_reduce_s'] * 1e3:7.3f} {r['sync_s'] * 1e3:7.3f} {r['launch_s'] * 1e3:9.3f} "
              f"{r['hbm_roofline_share'] * 100:8.0f}%")
    best16 = max(r["tokens_per_s"] for r in rows if r["tp"] == 16)
    print(f"16 sockets, best: {best16:.0f} tokens/s/user vs the paper's {PAPER_16:.0f} ({best16 / PAPER_16 - 1:+.0%})")
    out = {"rows": rows, "paper_16_sockets": PAPER_16}
    if a.sweep:
        out["sweep_16"] = sweep_16(["ring", "full"], [0.25e-6, 0.5e-6, 1e-6, 2e-6], [50e9, 100e9, 200e9])
        for r in out["sweep_16"]:
            print(f"{r['topology']:4} hop {float(r['hop_latency_s']) * 1e6:4.2f} us, link {float(r['link_bytes_per_s']) / 1e9:5.0f} GB/s: "
                  f"{float(r['tokens_per_s']):6.0f} tokens/s (one all-reduce {float(r['one_all_reduce_s']) * 1e6:.1f} us, {r['algorithm']})")
    print(f"wall {time.perf_counter() - t0:.0f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
