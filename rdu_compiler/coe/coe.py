"""`CoE`: a router and N experts, each compiled separately, on one RDU node.

`run` executes the router on the emulator, takes the argmax of its output as the expert,
brings that expert into the HBM cache (LRU) and runs it on the emulator. `simulate` gives
a request-level timeline (router, switch, execution) from the programs' cost reports or
from a `Timing` (e.g. `rdu_compiler.coe.llama.RduLlamaTiming` for Llama-2-7B experts).

`CoE` compiles and emulates each program whole on one socket (compiling the experts with
`tp` is not wired here; `coe.llama.rdu_tp_step_s` times Llama-shaped experts with
`rdu-shard`); the node's sockets matter for capacities (HBM and DDR x sockets) and for
switching (each socket copies its 1/sockets shard at the node's DDR -> HBM bandwidth per
socket).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rdu_compiler.coe.runtime import (
    Access,
    ExpertCache,
    MemoryPlan,
    Request,
    Timeline,
    Timing,
    plan_memory,
    simulate,
    switch_seconds,
)
from rdu_compiler.errors import RduError


class RouterOutputError(RduError):
    """The router's output cannot name one expert (wrong size)."""


def program_weight_bytes(program: Any) -> int:
    """Bytes of a compiled program's weights (what lives in DDR and is copied to HBM)."""
    return int(sum(w.numel() * w.element_size() for w in program.imported.weights.values() if isinstance(w, torch.Tensor)))


@dataclass(frozen=True)
class ReportTiming:
    """Timing from the compiled programs' cost reports: the router's `estimated_s` once, the
    expert's `estimated_s` once per output token (each program call is one step)."""

    router_estimated_s: float
    expert_estimated_s: Sequence[float]

    def router_s(self, request: Request) -> float:
        return self.router_estimated_s

    def exec_s(self, request: Request) -> float:
        return self.expert_estimated_s[request.expert] * max(1, request.output)


@dataclass(frozen=True)
class CoEOutput:
    """One `CoE.run`: the chosen expert, its output, the router's logits, and the cache event."""

    expert: int
    output: Any
    router_logits: torch.Tensor
    access: Access
    switch_s: float


class CoE:
    """A Composition of Experts on an RDU node.

    Args:
        router: a `CompiledProgram` or a `(module, example_inputs)` pair whose output has one
            score per expert (shape [n] or [1, n]).
        experts: CompiledPrograms or `(module, example_inputs)` pairs taking the router's inputs.
        fabric: fabric preset or spec path (a node preset such as `sn40l-node8`, or `tiny`).
        sockets: sockets the CoE spans (default: the fabric's node; any count for a one-socket
            spec); capacities are per socket times `sockets`.
        kv_bytes: HBM reserved for the KV cache (bytes).
        activation_bytes: HBM reserved for activations (bytes); default: the largest
            `hbm_peak_bytes - weights` over the programs' reports.
        timing: times for `simulate` (default `ReportTiming` from the reports).

    Raises:
        RduError: a program fails to compile; sockets outside 1..node sockets.
        CoEDoesNotFit: the experts exceed DDR, or an expert exceeds the HBM cache.
    """

    def __init__(self, router: Any, experts: Sequence[Any], fabric: str = "sn40l-node8", sockets: int | None = None, *,
                 kv_bytes: float = 0.0, activation_bytes: float | None = None, timing: Timing | None = None,
                 opt_level: int = 1):
        from rdu_compiler.api import _fabric

        self.fabric = _fabric(fabric)
        node = self.fabric.node
        self.sockets = node.sockets if sockets is None else sockets
        if self.sockets < 1 or (node.sockets > 1 and self.sockets > node.sockets):
            raise RduError(f"sockets={self.sockets} but the node '{self.fabric.name}' has {node.sockets}; use 1..{node.sockets}")
        if not experts:
            raise RduError("a CoE needs at least one expert")
        self.router = _compiled(router, fabric, opt_level)
        self.experts = [_compiled(e, fabric, opt_level) for e in experts]
        self.router_bytes = program_weight_bytes(self.router)
        self.expert_bytes = [program_weight_bytes(e) for e in self.experts]
        if activation_bytes is None:
            programs = [self.router, *self.experts]
            activation_bytes = float(max(p.report["totals"]["hbm_peak_bytes"] - program_weight_bytes(p) for p in programs))
            activation_bytes = max(activation_bytes, 0.0)
        self.copy_bytes_per_s = node.ddr_to_hbm_bytes_per_s  # per socket
        self.plan: MemoryPlan = plan_memory(
            self.fabric.hbm.capacity_bytes * self.sockets, self.fabric.ddr.capacity_bytes * self.sockets,
            self.router_bytes, self.expert_bytes, kv_bytes, activation_bytes,
            machine=f"{self.sockets} socket(s) of '{self.fabric.name}'")
        self.cache = ExpertCache(self.plan.cache_bytes)
        self.timing: Timing = timing or ReportTiming(
            self.router.report["totals"]["estimated_s"], [e.report["totals"]["estimated_s"] for e in self.experts])

    def switch_s(self, nbytes: float) -> float:
        """Seconds to copy `nbytes` of an expert DDR -> HBM: each socket its shard, in parallel."""
        return switch_seconds(nbytes, self.copy_bytes_per_s, self.sockets)

    def choose(self, *inputs: Any) -> tuple[int, torch.Tensor]:
        """Run the router on the emulator; returns (argmax expert, logits).

        Raises:
            RouterOutputError: the router's output does not hold one score per expert.
        """
        logits = self.router.run(*inputs)
        if not isinstance(logits, torch.Tensor) or logits.numel() != len(self.experts):
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise RouterOutputError(f"the router returned {shape} but the CoE has {len(self.experts)} experts: "
                                    f"the router must return one score per expert (shape [{len(self.experts)}] or "
                                    f"[1, {len(self.experts)}])")
        return int(torch.argmax(logits.reshape(-1)).item()), logits

    def run(self, inputs: Any) -> CoEOutput:
        """Route `inputs` (a tensor or a tuple of tensors) and run the chosen expert on the emulator.

        Raises:
            RouterOutputError: see `choose`; RduError: the emulator refused a program.
        """
        args = inputs if isinstance(inputs, tuple) else (inputs,)
        expert, logits = self.choose(*args)
        access = self.cache.access(expert, self.expert_bytes[expert])
        switch = 0.0 if access.hit else self.switch_s(self.expert_bytes[expert])
        return CoEOutput(expert, self.experts[expert].run(*args), logits, access, switch)

    def simulate(self, requests: Sequence[Request], *, prefetch: bool = True) -> Timeline:
        """The request-level timeline on this node, from a cold cache (see `runtime.simulate`;
        `prefetch`: copy the next request's expert during the current run when it fits)."""
        return simulate(requests, self.expert_bytes, self.plan, self.switch_s, self.timing,
                        f"{self.fabric.name} x{self.sockets}", prefetch=prefetch)


def _compiled(program: Any, fabric: str, opt_level: int) -> Any:
    from rdu_compiler.api import CompiledProgram, compile

    if isinstance(program, CompiledProgram):
        return program
    if isinstance(program, tuple) and len(program) == 2:
        module, inputs = program
        return compile(module, tuple(inputs), fabric=fabric, opt_level=opt_level)
    raise RduError(f"a router or expert must be a CompiledProgram or a (module, example_inputs) pair, got {type(program).__name__}")
