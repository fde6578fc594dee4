"""Serving policies: how the fabric is divided between prefill and decode, and who goes first.

- `chunked` (vLLM / Sarathi-Serve): one monolithic program per step on the whole fabric;
  each step decodes every running request and fills the rest of a token budget
  (`chunk_tokens`, default 512) with prefill chunks, first come first served.
- `static:F`: prefill always on the share F of the grid, decode on the other 1 - F, each
  running its own steps back to back; prefill first come first served.
- `nexus` (Nexus [S]): the same two engines, but the split is re-chosen from the latency
  and contention model before every step, by a greedy search over the compiled shares
  (start at the current split, look one share each way, keep walking while it improves:
  2-4 model calls) with hysteresis (move only when the objective improves by more than
  `hysteresis`, default 5 %). The objective is
      J(F) = w * T_prefill(F) / T_prefill(1) + (1 - w) * T_decode(1 - F) / T_decode(1),
  T_prefill = time to prefill the whole waiting queue on F (contended with decode),
  T_decode = one decode step of the running batch on 1 - F (contended with prefill),
  each normalised by its time on the whole grid (so J is unitless and needs no SLO),
  w = 0.75 (favour TTFT) while KV occupancy < `kv_switch` (default 0.7), else 0.25 (favour
  TBT, so running requests finish and free KV). With nothing to prefill, decode takes the
  largest share; with nothing to decode, prefill does. Prefill takes shortest prompt first,
  decode is first come first served.
- `disaggregated` / `disaggregated:P:D` (DistServe, Splitwise): prefill on P sockets of a
  node and decode on D others, the KV cache sent over the inter-RDU links; plain
  `disaggregated` sweeps the splits. Runs on a node only (`node.simulate_node`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rdu_compiler.errors import RduError


class PolicyError(RduError):
    """An unknown or unusable policy name or parameter."""


@dataclass(frozen=True)
class Policy:
    """A parsed policy. kind: "chunked" | "static" | "nexus" | "disaggregated"; share:
    prefill share (static); chunk_tokens: chunked's token budget per step; hysteresis,
    kv_switch: nexus's knobs; prefill_sockets, decode_sockets: disaggregated's split
    (0, 0 = sweep every split of the node's sockets)."""

    kind: str
    share: float = 0.5
    chunk_tokens: int = 512
    hysteresis: float = 0.05
    kv_switch: float = 0.7
    prefill_sockets: int = 0
    decode_sockets: int = 0

    @property
    def spatial(self) -> bool:
        return self.kind in ("static", "nexus")

    @property
    def name(self) -> str:
        if self.kind == "static":
            return f"static:{self.share:g}"
        if self.kind == "disaggregated" and self.prefill_sockets:
            return f"disaggregated:{self.prefill_sockets}:{self.decode_sockets}"
        return self.kind


def parse_policy(text: str, *, chunk_tokens: int = 512) -> Policy:
    """`chunked`, `static:F` (0 < F < 1), `nexus`, `disaggregated`, `disaggregated:P:D`
    (P prefill and D decode sockets, integers >= 1; whether the node has P + D sockets is
    checked by `node.simulate_node`).

    Raises:
        PolicyError: unknown name, bad F, or a bad P:D split.
    """
    if text == "chunked":
        if chunk_tokens < 1:
            raise PolicyError(f"chunked needs a token budget >= 1, got {chunk_tokens}")
        return Policy("chunked", chunk_tokens=chunk_tokens)
    if text == "nexus":
        return Policy("nexus")
    if text.startswith("static:"):
        try:
            share = float(text.split(":", 1)[1])
        except ValueError:
            share = -1.0
        if not 0 < share < 1:
            raise PolicyError(f"policy {text!r}: F in static:F must be a number strictly between 0 and 1 (the prefill share)")
        return Policy("static", share=share)
    if text == "disaggregated":
        return Policy("disaggregated")
    if text.startswith("disaggregated:"):
        parts = text.split(":")[1:]
        if len(parts) != 2 or not all(p.isdigit() and int(p) >= 1 for p in parts):
            raise PolicyError(f"policy {text!r}: write disaggregated:P:D with P prefill and D decode sockets, whole numbers "
                              ">= 1 (e.g. disaggregated:1:3), or plain disaggregated to sweep the splits")
        return Policy("disaggregated", prefill_sockets=int(parts[0]), decode_sockets=int(parts[1]))
    raise PolicyError(f"unknown policy {text!r}; use chunked, static:F (0 < F < 1), nexus, disaggregated[:P:D]")


def spf(waiting: Sequence[int], prompt_of: Callable[[int], int]) -> list[int]:
    """Shortest prompt first (stable): request ids sorted by tokens still to prefill."""
    return sorted(waiting, key=prompt_of)


def greedy_split(
    rows: Sequence[int], current: int, objective: Callable[[int], float], hysteresis: float
) -> tuple[int, int]:
    """Nexus's split search: from `current` (an element of `rows`, sorted), step to a
    neighbour while the objective drops; move only when the best found beats the current
    one by more than `hysteresis` (relative). Returns (rows chosen, objective calls)."""
    i = rows.index(current)
    calls = 1
    here = best = objective(current)
    best_i = i
    for step in (-1, 1):
        j, last = i + step, here
        while 0 <= j < len(rows):
            val = objective(rows[j])
            calls += 1
            if val >= last:
                break
            last = val
            if val < best:
                best, best_i = val, j
            j += step
        if best_i != i:
            break
    if best_i != i and best < here * (1 - hysteresis):
        return rows[best_i], calls
    return current, calls
