"""Llama-shaped experts: sizes, and execution times on an RDU node (tensor-parallel) and a GPU box.

`LlamaSpec` (`bench.models`) gives a model's parameter count, weight bytes (BF16: 2 bytes per parameter),
KV cache bytes and all-reduce message bytes from its shape alone.

`rdu_tp_step_s` is one tensor-parallel step on a node: a whole decoder layer compiled with
the sharding pass (`rdu-shard{tp}`, issue 13), timed by the node cost model (every socket's
sections, the all-reduces in the IR, the sync; see its docstring). `TPLayer` is the
per-socket shard written by hand, kept for `tp_layer`'s shapes and the GPU timing. `RduLlamaTiming` and `GpuLlamaTiming` turn
those step times into router and execution times per request for `runtime.simulate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from rdu_compiler.bench.models import LLAMA_SPECS, LlamaSpec, RMSNorm, _rotate_half
from rdu_compiler.coe.gpu import GpuNode
from rdu_compiler.coe.runtime import Request
from rdu_compiler.errors import RduError

LLAMA2_7B = LLAMA_SPECS["llama2-7b"]
#: Llama 3.1 8B (HF config): GQA with 8 KV heads, MLP 14336, vocab 128256.
LLAMA31_8B = LLAMA_SPECS["llama3.1-8b"]
BUILTIN_SHAPES = {LLAMA2_7B.name: LLAMA2_7B, LLAMA31_8B.name: LLAMA31_8B}


class TPLayer(nn.Module):
    """The per-socket shard of a Megatron-TP Llama layer: `heads / tp` query heads and
    `kv_heads / tp` KV heads of `head_dim`, `mlp / tp` MLP columns, hidden unchanged.

    forward(x [b, n, hidden], cos/sin [n, head_dim], past_k/past_v [b, kv_local, past, head_dim]
    when past > 0) -> [b, n, hidden] (the partial sum before each all-reduce is what the
    row-parallel projections produce; the residual adds stand where the all-reduces go)."""

    def __init__(self, spec: LlamaSpec, tp: int):
        super().__init__()
        self.h, self.kv, self.d = spec.heads // tp, max(1, spec.kv_heads // tp), spec.head_dim
        self.input_norm = RMSNorm(spec.hidden, 1e-5)
        self.q_proj = nn.Linear(spec.hidden, self.h * self.d, bias=False)
        self.k_proj = nn.Linear(spec.hidden, self.kv * self.d, bias=False)
        self.v_proj = nn.Linear(spec.hidden, self.kv * self.d, bias=False)
        self.o_proj = nn.Linear(self.h * self.d, spec.hidden, bias=False)
        self.post_norm = RMSNorm(spec.hidden, 1e-5)
        self.gate_proj = nn.Linear(spec.hidden, spec.mlp // tp, bias=False)
        self.up_proj = nn.Linear(spec.hidden, spec.mlp // tp, bias=False)
        self.down_proj = nn.Linear(spec.mlp // tp, spec.hidden, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *past: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        h = self.input_norm(x)
        q = self.q_proj(h).view(b, n, self.h, self.d).transpose(1, 2)
        k = self.k_proj(h).view(b, n, self.kv, self.d).transpose(1, 2)
        v = self.v_proj(h).view(b, n, self.kv, self.d).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if past:
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
        if self.kv != self.h:
            k = k.repeat_interleave(self.h // self.kv, dim=1)
            v = v.repeat_interleave(self.h // self.kv, dim=1)
        scores = ((q @ k.transpose(2, 3)) * (1.0 / math.sqrt(self.d))).float()
        if n > 1:
            total = k.shape[2]
            row = torch.arange(n, device=x.device).unsqueeze(1) + (total - n)
            col = torch.arange(total, device=x.device).unsqueeze(0)
            scores = scores + (col > row).float() * torch.finfo(torch.float32).min
        attn = torch.softmax(scores, dim=-1).to(q.dtype)
        o = (attn @ v).transpose(1, 2).reshape(b, n, self.h * self.d)
        x = x + self.o_proj(o)
        h = self.post_norm(x)
        return x + self.down_proj(nn.functional.silu(self.gate_proj(h)) * self.up_proj(h))


def tp_layer(spec: LlamaSpec, tp: int, seq: int, past: int, batch: int) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The per-socket TP layer and its example inputs on the meta device (BF16, shapes only).

    GQA: with tp <= kv_heads each socket holds kv_heads / tp KV heads; with tp > kv_heads (a
    multiple of it) each socket holds one KV head, replicated on tp / kv_heads sockets (as
    Megatron does): each of them reads that head's K/V weights and KV cache.

    Raises:
        RduError: tp does not divide heads and mlp, or neither divides nor is a multiple of kv_heads.
    """
    kv_ok = spec.kv_heads % tp == 0 or tp % spec.kv_heads == 0
    if tp < 1 or spec.heads % tp or spec.mlp % tp or not kv_ok:
        raise RduError(f"tp={tp} must divide heads ({spec.heads}) and mlp ({spec.mlp}) of {spec.name}, and divide or be a "
                       f"multiple of kv_heads ({spec.kv_heads}); pick another tp")
    with torch.device("meta"):
        layer = TPLayer(spec, tp).to(torch.bfloat16).eval()
        d = spec.head_dim
        inputs: tuple[torch.Tensor, ...] = (torch.empty(batch, seq, spec.hidden, dtype=torch.bfloat16),
                                            torch.empty(seq, d, dtype=torch.bfloat16), torch.empty(seq, d, dtype=torch.bfloat16))
        if past:
            kv = (batch, max(1, spec.kv_heads // tp), past, d)
            inputs += (torch.empty(kv, dtype=torch.bfloat16), torch.empty(kv, dtype=torch.bfloat16))
    return layer, inputs


_LAYER_CACHE: dict[tuple[object, ...], tuple[float, float, float, float, int]] = {}


def rdu_tp_step_s(spec: LlamaSpec, node_fabric: str, tp: int, seq: int, past: int, batch: int) -> dict[str, float]:
    """One model step (all layers) under tensor parallelism on an RDU node (seconds), from
    the compiled sharded program.

    Compiles one whole decoder layer (`tp_layer(spec, 1, ...)`, BF16 on meta) with
    `rdu-shard{tp}` for `node_fabric` (issue 13: Megatron's layout, two all-reduces per
    layer; GQA KV heads split when `kv_heads % tp == 0`, else the K/V projections
    replicated), and takes the node's time for one layer call from the report: every
    socket's sections + the collectives (`cost.collectives` on the node) + one `sync_s`
    (each layer is one call: no kernel looping). The LM head's shard (vocab x hidden x 2 /
    tp bytes) is added at the socket's HBM bandwidth.

    Returns:
        {"layer_s": one socket's sections, "all_reduce_s": the layer's collectives / 2,
        "sync_s", "lm_head_s", "step_s": layers x (node time per layer) + LM head (seconds);
        "activation_bytes": the layer program's HBM peak per socket less its weight shards
        (bytes); "sections": the layer program's sections (kernel launches per layer call)}.

    Raises:
        RduError: tp does not divide the node's sockets or exceeds them, or the compile failed.
    """
    from rdu_compiler import api
    from rdu_compiler.api import _fabric

    fab = _fabric(node_fabric)
    if tp > fab.node.sockets:
        raise RduError(f"tp={tp} needs {tp} sockets but '{fab.name}' has {fab.node.sockets}; use a node preset "
                       "such as sn40l-node8, or a smaller tp")
    key = (spec, fab.source, tp, seq, past, batch)
    if key not in _LAYER_CACHE:
        layer, inputs = tp_layer(spec, 1, seq, past, batch)
        program = api.compile(layer, inputs, fabric=node_fabric, tp=tp)
        totals = program.report["totals"]
        node_s = totals["estimated_s"]
        sections_s = totals.get("socket_sections_s", node_s)
        collectives_s = totals.get("collectives_s", 0.0)
        act = max(0.0, float(totals["hbm_peak_bytes"] - _socket_weight_bytes(program, tp)))
        _LAYER_CACHE[key] = (node_s, sections_s, collectives_s, act, totals["sections"])
    node = fab.node
    lm = spec.vocab * spec.hidden * spec.dtype_bytes / tp / fab.hbm.bytes_per_s
    node_s, sections_s, collectives_s, act, sections = _LAYER_CACHE[key]
    sync = node.sync_s if tp > 1 else 0.0
    out = {"layer_s": sections_s, "all_reduce_s": collectives_s / 2, "sync_s": sync, "lm_head_s": lm,
           "activation_bytes": act, "sections": sections}
    out["step_s"] = spec.layers * node_s + lm
    return out


def _socket_weight_bytes(program: Any, tp: int) -> float:
    """Bytes of the weight arguments one socket holds. `rdu-shard` records a sharded
    argument's shard (`rdu.shard`) and, where every use takes that shard, narrows its type
    to it; an argument still of the full size with a shard holds 1/tp of it."""
    from xdsl.dialects import func

    from rdu_compiler.dialects import rdu
    from rdu_compiler.kernel.traffic import itemsize

    fn = next(op for op in program.module.ops if isinstance(op, func.FuncOp))
    attrs = fn.arg_attrs.data if fn.arg_attrs else [None] * len(fn.args)
    full = {name: w.numel() * w.element_size() for name, w in program.imported.weights.items()}
    total = 0.0
    for name, arg, a in zip(program.imported.arg_names, fn.args, attrs, strict=True):
        d = a.data if a is not None else {}
        if "rdu.input" in d:
            continue
        nbytes = math.prod(rdu.shape_of(arg.type)) * itemsize(arg.type)
        total += nbytes / tp if "rdu.shard" in d and nbytes == full.get(name) else nbytes
    return total


@dataclass
class RduLlamaTiming:
    """Router and expert times on an RDU node from `rdu_tp_step_s` (seconds).

    router: one prefill step over the prompt. expert: a prefill step over the prompt (it
    yields the first output token), then output - 1 decode steps, each at the context
    prompt + output // 2 (the midpoint: a modelling choice instead of one compile per step).
    """

    expert: LlamaSpec
    router: LlamaSpec
    node_fabric: str = "sn40l-node8"
    tp: int = 8
    cache: dict[tuple[object, ...], float] = field(default_factory=dict)

    def _step(self, spec: LlamaSpec, seq: int, past: int, batch: int) -> float:
        key = (spec, seq, past, batch)
        if key not in self.cache:
            self.cache[key] = rdu_tp_step_s(spec, self.node_fabric, self.tp, seq, past, batch)["step_s"]
        return self.cache[key]

    def router_s(self, request: Request) -> float:
        return self._step(self.router, request.prompt, 0, request.batch)

    def exec_s(self, request: Request) -> float:
        first = self._step(self.expert, request.prompt, 0, request.batch)
        if request.output <= 1:
            return first
        return first + (request.output - 1) * self._step(self.expert, 1, request.prompt + request.output // 2, request.batch)


@dataclass(frozen=True)
class GpuLlamaTiming:
    """Router and expert times on a GPU box at its rooflines (`GpuNode.prefill_s`,
    `decode_step_s`: HBM-bound decode), TP over all its GPUs; same steps as `RduLlamaTiming`."""

    expert: LlamaSpec
    router: LlamaSpec
    gpu: GpuNode

    def _prefill(self, spec: LlamaSpec, request: Request) -> float:
        tokens = request.batch * request.prompt
        return self.gpu.prefill_s(spec.streamed_bytes, spec.params, tokens, spec.kv_bytes(tokens), spec.layers,
                                  spec.act_bytes(request.batch, request.prompt))

    def router_s(self, request: Request) -> float:
        return self._prefill(self.router, request)

    def exec_s(self, request: Request) -> float:
        first = self._prefill(self.expert, request)
        if request.output <= 1:
            return first
        ctx = request.batch * (request.prompt + request.output // 2)
        step = self.gpu.decode_step_s(self.expert.streamed_bytes, self.expert.kv_bytes(ctx), self.expert.layers,
                                      self.expert.act_bytes(request.batch, 1))
        return first + (request.output - 1) * step
