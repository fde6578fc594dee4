"""The kernel executor with its per-tile work prepared once per program.

`PreparedKernelExecutor` computes exactly what `KernelExecutor` computes, tile by tile,
with the same numpy calls on the same tile values (so the same bits); what it does once
instead of on every run is the Python around them:

- the tile list, each operand's slice / transpose / reshape for each tile, each result's
  store index, and the bytes each operand moves (`KernelStats.operand_bytes`, a function of
  the tiles and the operands' element sizes) are computed on the first run for the
  operands' element sizes and reused;
- the PMU-capacity check (`_check_buffers`) runs once per element-size combination;
- a contraction's operands stored in a narrower type than the accumulator (bf16
  activations into an f32 accumulator) are converted once per run, whole, instead of once
  per tile that reads them (the conversion is exact and elementwise, so each tile sees the
  same values); each k-tile's product is added into the accumulator in place, the last one
  straight into the result;
- a kernel of one tile whose result is a fresh array of the result's shape and dtype
  hands that array over instead of copying it into a new one;
- the payload writes elementwise results into temporaries nothing reads afterwards
  (`CompiledPayload(inplace=True)`: the same ufunc loop, so the same values);
- an operand whose tile is all of it (a projection in order, no dim dropped) is passed as
  it is, not as a view of all of it; other projection cuts are applied inline; a
  contraction's identity transposes are skipped (views with the same strides: the same
  matmul, the same bits);
- a map kernel of one tile runs `_run_map1`: the tile loop's steps for that one tile,
  a yielded fresh array of the result's shape and dtype becoming the result; from its second
  run, a large tile's f32 / bf16 arithmetic is one compiled loop (`jit.py`: the same bits).

`testsuite/unit/test_emulator_fast.py` runs both executors on the example models, bitwise.
"""

from __future__ import annotations

import math
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from xdsl.dialects import arith

from rdu_compiler.dialects.rdu import KernelOp, Pattern, YieldOp
from rdu_compiler.interpreters import bf16_vec, jit, onednn, sgemm
from rdu_compiler.interpreters.kernel import (
    Empty,
    KernelExecutor,
    KernelStats,
    _gather,
    _itemsize,
    apply_casts,
    projection_cut,
    tile_matmul,
)
from rdu_compiler.interpreters.payload import TileContext
from rdu_compiler.kernel.access import Access, tiles
from rdu_compiler.kernel.payload import contraction_dims

#: A prepared gather (see `_cut`).
Cut = tuple[str, Any, Any, Any] | None


@dataclass
class _Tile:
    starts: tuple[int, ...]
    sizes: tuple[int, ...]
    new_par: bool  # a new parallel position: the accumulators restart here
    cuts: list[Cut]
    stores: list[tuple[tuple[Any, ...], list[int] | None, tuple[Any, ...]]]  # per result: drop, order, index
    tile_shape: tuple[int, ...]
    last_red: bool = False  # the last reduction tile of its parallel position
    ctx: TileContext | None = None  # the payload's view of this tile (its gathered bytes reset each run)
    modes: list[int] | None = None  # per operand: `_read_mode` of its cut
    reads: list[tuple[int, int, Cut, Access]] | None = None  # (operand, `_read_mode`, cut, access) of each operand the payload reads


@dataclass
class _Plan:
    tiles: list[_Tile]
    operand_bytes: list[int]
    whole: list[bool]  # per result: one tile writes all of it, in order (the value can be handed over)
    shapes: list[tuple[int, ...]]  # per result
    whole_tile: list[bool] = None  # type: ignore[assignment]  # per result: `whole`, and the tile's value is the result's shape (no dim dropped)
    mkl_tiles: bool | None = None  # a contraction whose tile products all go to MKL (`_ahead`), once known
    merged: Any = None  # (`_Plan` of the whole domain, operand strides) when its one GEMM gave the tiles' bits (`_merge`), False if not


#: A contraction operand narrower than its accumulator is converted whole, once per run,
#: up to this many elements; larger ones (weights, read once per run tile by tile) are
#: converted tile by tile as `_contract` does [NF: a whole 7B-layer weight converted is
#: 180 MB of fresh memory per run, slower than its tiles].
CONVERT_WHOLE_MAX = 1 << 22

#: A contraction is computed whole (`_merge`) up to this many result elements [NF: the
#: whole product is one more result-sized array; 1 GiB of f32 at most].
MERGE_MAX = 1 << 28

#: A non-projection access's index arrays are kept for the next run up to this many tile
#: points (int64 each, per operand dim) [NF: bounds the memory kept, 8 MB per array].
GRID_POINTS_KEPT = 1 << 20


def _cut(access: Access, starts: tuple[int, ...], sizes: tuple[int, ...], shape: tuple[int, ...]) -> Cut:
    """How `_gather` cuts this operand's tile, with the numbers worked out once:
    ("slice", index, transpose order or None, reshape shape) for a projection;
    ("strided", first element, element strides per loop dim, tile shape) for a linear access
    with non-negative coefficients whose tile lies inside the operand (a strided view, copied
    C-contiguous as the index gather returns it); ("grid", index arrays) for other small
    tiles; None: `_gather` on each run."""
    if not access.forms:
        return None
    rank = len(sizes)
    if not access.is_projection:
        used = [any(coeffs[d] for coeffs, _ in access.forms) for d in range(rank)]
        lo = access.origin(starts)
        hi = [const + sum(c * (s + n - 1) for c, s, n in zip(coeffs, starts, sizes, strict=True)) for coeffs, const in access.forms]
        if (all(c >= 0 for coeffs, _ in access.forms for c in coeffs) and len(shape) == len(access.forms)
                and all(0 <= a <= b < n for a, b, n in zip(lo, hi, shape, strict=True))):
            coeffs = [[coeffs[d] for coeffs, _ in access.forms] for d in range(rank)]
            return "strided", tuple(lo), coeffs, tuple(sizes[d] if used[d] else 1 for d in range(rank))
        if math.prod(sizes) > GRID_POINTS_KEPT:
            return None
        grids = [np.arange(s, s + n).reshape([n if i == d else 1 for i in range(rank)]) for d, (s, n) in enumerate(zip(starts, sizes, strict=True))]
        idx = [const + sum(c * grids[d] for d, c in enumerate(coeffs) if c) for coeffs, const in access.forms]
        return "grid", tuple(np.broadcast_arrays(*idx)), None, None
    index, order, tile_shape = projection_cut(access, starts, sizes)
    return "slice", index, order, tile_shape


def _apply(arr: Any, cut: Cut, access: Access, starts: tuple[int, ...], sizes: tuple[int, ...], copy: bool = True) -> Any:
    """The operand's tile (as `_gather` gives it). `copy=False`: a strided cut stays a
    read-only view (for payloads whose every use is elementwise: the same values)."""
    if cut is None:
        return _gather(arr, access, starts, sizes)
    kind, index, order, shape = cut
    if kind == "strided":
        a = np.asarray(arr)
        strides = [sum(c * s for c, s in zip(cs, a.strides, strict=True)) for cs in order]
        if a.flags.c_contiguous and a.dtype.kind in "biuf":  # the same view over a's buffer, without as_strided's Python
            offset = sum(i * s for i, s in zip(index, a.strides, strict=True))
            view = np.ndarray(shape, a.dtype, buffer=a, offset=offset, strides=strides)
            view.flags.writeable = False
        else:
            first = a[tuple(slice(i, None) for i in index)]
            view = np.lib.stride_tricks.as_strided(first, shape, strides, writeable=False)
        return np.ascontiguousarray(view) if copy else view
    view = arr[index]
    if kind == "grid":
        return view
    if order is not None:
        view = np.transpose(view, order)
    return view.reshape(shape)


#: `_probe`'s random values repeat with this period (elements) [NF: long enough that a sum in
#: another order shows in some element; fresh values for every element cost 0.7 s once].
PROBE_PERIOD = 1 << 20

_PROBES: dict[np.dtype[Any], np.ndarray] = {}


def _probe(x: Any) -> Any:
    """Random values with x's dtype, shape and strides (a window stays a window): bf16
    values (as f32 for an f32 x) of magnitude in [1/128, 2) and either sign, so that sums
    of many products neither overflow nor cancel to zeros; other operands as they are."""
    if type(x) is not np.ndarray or x.dtype not in (onednn.BF16, onednn.F32) or not x.size or min(x.strides, default=0) < 0:
        return x
    span = 1 + sum((n - 1) * st for n, st in zip(x.shape, x.strides, strict=True)) // x.itemsize
    pool = _PROBES.get(x.dtype)
    if pool is None:
        raw = np.frombuffer(np.random.default_rng(0).bytes(2 * PROBE_PERIOD), dtype=np.uint16)
        # random sign and mantissa, exponent 2^-7 .. 2^0 (from three random bits): [1/128, 2)
        bits = ((raw & 0x807F) | (((raw >> 7) & 7) + 0x78) << 7).view(onednn.BF16)
        pool = _PROBES[x.dtype] = bits if x.dtype == onednn.BF16 else bits.astype(np.float32)
    buf = np.resize(pool, span)  # the pool repeated: a copy at memory speed
    return np.lib.stride_tricks.as_strided(buf, x.shape, x.strides, writeable=False)


def _read_mode(cut: Cut, x: Any) -> int:
    """How the tile loop reads an operand through `cut`: 0, the whole operand as it is (a
    projection cut whose slices cover every dim (one or more) of `x` in order, reshaped to `x`'s own
    shape: `_apply` would return a view of all of `x`, the same values); 1, a projection
    cut inline; 2, through `_apply`."""
    if cut is None or cut[0] != "slice":
        return 2
    _, index, order, shape = cut
    xs = getattr(x, "shape", None)
    if (order is None and xs and len(index) == len(xs) and tuple(shape) == tuple(xs)
            and all(isinstance(s, slice) and s.start == 0 and s.stop == n and s.step is None for s, n in zip(index, xs, strict=True))):
        return 0
    return 1


class PreparedKernelExecutor(KernelExecutor):
    """`KernelExecutor` with its per-tile bookkeeping prepared once (see the module doc)."""

    inplace = True

    def __init__(self, kernel: KernelOp):
        super().__init__(kernel)
        self._plans: dict[tuple[Any, ...], _Plan] = {}
        self._contract_plans: dict[tuple[int, ...], Any] = {}
        self._direct: bool | None = None
        self._buffers: dict[int, np.ndarray] = {}
        self.roles = None
        self._general = self.kind in (Pattern.SCAN, Pattern.SCATTER, Pattern.HASH_PROBE)
        # every yielded value is an array the payload makes on each run (a ufunc's, astype's,
        # np.where's): no operand's memory, so `_fresh` need not look (a map kernel's payload)
        ys = self.payload.yield_slots if not self._general and not self.red else []
        self._made = bool(ys) and all(s in self.payload.fresh for s in ys) and len(set(ys)) == len(ys)
        # a map whose payload is one float cast of an input (logits to bf16): the argument of
        # that input, written into each tile's result slice by the cast itself (`_cast_into`)
        self._cast_only: int | None = None
        ops = list(kernel.body.block.ops)
        if (not self._general and not self.red and self.n_init == 1 and len(ops) == 2
                and isinstance(ops[0], arith.ExtFOp | arith.TruncFOp) and isinstance(ops[1], YieldOp)
                and ops[1].operands[0] is ops[0].results[0] and ops[0].operands[0] in kernel.body.block.args[:self.n_in]):
            self._cast_only = kernel.body.block.args.index(ops[0].operands[0])  # type: ignore[arg-type]
        self._jit = jit.Tier(self.payload, self.result_dtypes) if not self._general and not self.red else None
        if self.contraction is not None:
            a, b = self.contraction
            self.roles = contraction_dims(self.accesses[a], self.accesses[b], self.accesses[self.n_in], len(self.domain))

    def _buffer(self, i: int, shape: tuple[int, ...]) -> np.ndarray:
        """An uninitialised array for result `i` (what `np.empty` gives): last run's, when
        nothing else holds it any more (no value, view or output of that run), else a new one.
        Fresh large arrays cost page faults on every run; every element a kernel's tiles
        store is overwritten, as in a new array."""
        buf = self._buffers.get(i)
        if buf is not None and sys.getrefcount(buf) == 3 and buf.shape == shape:  # the dict, `buf`, the call
            return buf
        buf = self._buffers[i] = np.empty(shape, dtype=self.result_dtypes[i])
        return buf

    def _plan(self, operands: list[Any], tile: tuple[int, ...] | None = None) -> _Plan:
        """The tiles of a run on operands like `operands` (`tile`: in place of the kernel's)."""
        order = list(self.par) + list(self.red)
        out: list[_Tile] = []
        operand_bytes = [0] * (self.n_in + self.n_init)
        current: tuple[int, ...] | None = None
        rank = len(self.domain)
        for starts, sizes in tiles(self.domain, tile if tile is not None else self.tile, order):
            par_key = tuple(starts[d] for d in self.par)
            new_par = par_key != current
            current = par_key
            for i, (arr, acc) in enumerate(zip(operands, self.accesses, strict=True)):
                if not isinstance(arr, Empty) and self.counted[i]:
                    operand_bytes[i] += math.prod(acc.extent(starts, sizes)) * _itemsize(arr)
            cuts = [_cut(acc, starts, sizes, tuple(np.shape(x)) if not isinstance(x, Empty) else x.shape) for acc, x in zip(self.accesses, operands, strict=True)]
            tile_shape = list(sizes)
            for d in self.red:
                tile_shape[d] = 1
            stores = []
            for i in range(self.n_init):
                acc = self.accesses[self.n_in + i]
                dims = [coeffs.index(1) for coeffs, _ in acc.forms if any(coeffs)]
                drop = tuple(0 if d not in dims else slice(None) for d in range(rank))
                ascending = sorted(dims)
                perm = [ascending.index(d) for d in dims] if dims != ascending else None
                index = tuple(
                    slice(starts[c.index(1)], starts[c.index(1)] + sizes[c.index(1)]) if any(c) else k for c, k in acc.forms
                )
                stores.append((drop, perm, index))
            reads = [
                (i, _read_mode(cuts[i], x), cuts[i], acc) for i, (x, acc) in enumerate(zip(operands, self.accesses, strict=True))
                if self.used[i] and not (self.red and i >= self.n_in) and not isinstance(x, Empty)
            ]
            ctx = TileContext(starts, sizes, self.gather_burst, self.gather_split)
            modes = [_read_mode(c, x) for c, x in zip(cuts, operands, strict=True)]
            out.append(_Tile(starts, sizes, new_par, cuts, stores, tuple(tile_shape), ctx=ctx, modes=modes, reads=reads))
        for t, nxt in zip(out, [*out[1:], None], strict=True):
            t.last_red = nxt is None or nxt.new_par
        whole, shapes = [], []
        for i in range(self.n_init):
            shape = self._result_shape(i, operands[self.n_in + i])
            shapes.append(shape)
            ok = len(out) == 1 and out[0].stores[i][1] is None
            if ok:
                _, _, index = out[0].stores[i]
                ok = all(isinstance(s, slice) and s.start == 0 and s.stop == n for s, n in zip(index, shape, strict=True))
            whole.append(ok)
        plan = _Plan(out, operand_bytes, whole, shapes)
        plan.whole_tile = [w and out[0].tile_shape == shape and all(isinstance(d, slice) for d in out[0].stores[i][0])
                           for i, (w, shape) in enumerate(zip(whole, shapes, strict=True))]
        return plan

    def run(self, ins: list[Any], inits: list[Any], caps: list[Any], check_buffers: bool = True) -> tuple[list[np.ndarray], KernelStats]:
        """Execute every tile (as `KernelExecutor.run`: same values, same stats)."""
        if self._general:
            return super().run(ins, inits, caps, check_buffers)
        operands = [*ins, *inits]
        key = tuple([(getattr(x, "dtype", None), type(x) is Empty) for x in operands])  # what the plan depends on
        plan = self._plans.get(key)
        if plan is None:
            if check_buffers:
                self._check_buffers(ins, inits)
            plan = self._plan(operands)
            self._plans[key] = plan
        stats = KernelStats(tiles=len(plan.tiles), operand_bytes=list(plan.operand_bytes))
        results: list[Any] = [None] * self.n_init
        fresh_ok = True
        tile_casts: tuple[tuple[np.dtype[Any], ...], ...] | None = None
        if self.roles is not None:
            a, b = self.contraction  # type: ignore[misc]
            dtype = self.result_dtypes[0]
            # bf16 x bf16 into f32 stays bf16 where oneDNN multiplies it (`tile_matmul`)
            casts = self.operand_casts
            native = dtype == onednn.F32 and onednn.available() and all(
                (c[-1] if c else key[i][0]) == onednn.BF16 for i, c in zip((a, b), casts, strict=True))
            left = list(casts)
            cast: dict[tuple[int, Any], np.ndarray] = {}  # both operands one tensor (q @ k^T of one qkv): cast once
            for j, i in enumerate((a, b)):  # converted once, whole (exact, elementwise): each tile sees the same values
                x = operands[i]
                if not isinstance(x, np.ndarray) or x.size > CONVERT_WHOLE_MAX:
                    continue
                if native and casts[j]:  # its rounding casts (truncf to bf16), once instead of per tile
                    y = cast.get((id(x), casts[j]))
                    operands[i] = y if y is not None else cast.setdefault((id(x), casts[j]), apply_casts(x, casts[j]))
                    left[j] = ()
                elif x.dtype != dtype and not native:
                    operands[i] = x.astype(dtype)
            tile_casts = (left[0], left[1])
            if self._direct is None:
                self._direct = self._direct_ok(plan)
            if self._direct:
                if (plan.merged is None and native and len(plan.tiles) > 1 and math.prod(plan.shapes[0]) <= MERGE_MAX
                        and not any(tile_casts) and all(t.new_par and t.last_red for t in plan.tiles)):
                    return self._merge(plan, operands, inits, caps, stats, tile_casts)
                if plan.merged and plan.merged[1] == self._layout(operands):  # the layout the check saw
                    results, _ = self._run_contraction(plan.merged[0], operands, inits, caps, KernelStats(), tile_casts)
                    stats.result_bytes = results[0].nbytes
                    return results, stats
                return self._run_contraction(plan, operands, inits, caps, stats, tile_casts)
        if not self.red and len(plan.tiles) == 1:
            return self._run_map1(plan, operands, caps, stats)
        if self._cast_only is not None and not self.red and (r := self._cast_whole(operands, plan)) is not None:
            stats.result_bytes = r.nbytes
            return [r], stats
        accs: list[Any] = []
        prev: _Tile | None = None
        single = len(plan.tiles) == 1
        copy = bool(self.red)  # a map's payload is elementwise: a strided view gives the same values uncopied
        for t in plan.tiles:
            if self.red and t.new_par:
                if prev is not None:
                    self._store(results, accs, prev, plan, single)
                accs = self._init_accs(inits, caps, t.starts, t.sizes)
            args: list[Any] = [None] * len(operands)
            for i, mode, cut, acc in t.reads:  # type: ignore[union-attr]
                x = operands[i]
                if mode == 0 and type(x) is np.ndarray:  # the whole operand, as it is: `_apply`'s view of all of it
                    args[i] = x
                elif mode == 1 and type(x) is np.ndarray:  # `_apply` of a projection, inline
                    view = x[cut[1]]  # type: ignore[index]
                    args[i] = (view.transpose(cut[2]) if cut[2] is not None else view).reshape(cut[3])  # type: ignore[index]
                else:
                    args[i] = _apply(x, cut, acc, t.starts, t.sizes, copy)
            args.extend(caps)
            if self.roles is not None:
                accs = self._contract_into(args, accs, t.sizes, tile_casts)
            else:
                ctx = t.ctx
                assert ctx is not None
                ctx.gathered_bytes = ctx.cold_gathered_bytes = 0
                ctx.rows_read = (0, 0)
                if not self.red and self._cast_only is not None and not single and self._cast_into(results, args, t, plan):
                    prev = t
                    continue
                if not self.red:
                    vals = self.payload.run(args, ctx)
                    values = [vals[s] for s in self.payload.yield_slots]
                    if single and not self._made and not self._fresh(values, [*operands, *caps]):
                        fresh_ok = False
                    self._store(results, values, t, plan, single and fresh_ok)
                else:
                    accs = self._reduce(args, accs, ctx, t.sizes)
                stats.gathered_bytes += ctx.gathered_bytes
                stats.cold_gathered_bytes += ctx.cold_gathered_bytes
                stats.add_rows(ctx)
            prev = t
        if self.red and prev is not None:
            self._store(results, accs, prev, plan, single)
        results = [r if r is not None else np.empty(plan.shapes[i], dtype=self.result_dtypes[i]) for i, r in enumerate(results)]
        stats.result_bytes = sum(r.nbytes for r in results)
        return results, stats

    def _run_map1(self, plan: _Plan, operands: list[Any], caps: list[Any], stats: KernelStats) -> tuple[list[np.ndarray], KernelStats]:
        """A map kernel of one tile: the tile loop's steps for that tile, with a value that is the
        whole result already (a fresh array of its shape and dtype) handed over without `_store`'s checks."""
        t = plan.tiles[0]
        args: list[Any] = [None] * len(operands)
        for i, mode, cut, acc in t.reads:  # type: ignore[union-attr]
            x = operands[i]
            if mode == 0 and type(x) is np.ndarray:
                args[i] = x
            elif mode == 1 and type(x) is np.ndarray:
                view = x[cut[1]]  # type: ignore[index]
                args[i] = (view.transpose(cut[2]) if cut[2] is not None else view).reshape(cut[3])  # type: ignore[index]
            else:
                args[i] = _apply(x, cut, acc, t.starts, t.sizes, False)
        args.extend(caps)
        ctx = t.ctx
        assert ctx is not None
        ctx.gathered_bytes = ctx.cold_gathered_bytes = 0
        ctx.rows_read = (0, 0)
        j = self._jit.get() if self._jit and ctx.points >= jit.JIT_MIN else None  # the compiled loop, into last run's arrays where free
        values = j.run(args, t.sizes, [self._buffer(i, s) if w else None for i, (s, w) in enumerate(zip(plan.shapes, plan.whole_tile, strict=True))]) if j else None
        if values is None:
            vals = self.payload.run(args, ctx)
            values = [vals[s] for s in self.payload.yield_slots]
        adopt = self._made or self._fresh(values, [*operands, *caps])
        results: list[Any] = [None] * self.n_init
        rest = False
        for i, val in enumerate(values):
            if (adopt and plan.whole_tile[i] and type(val) is np.ndarray and val.dtype == self.result_dtypes[i]
                    and val.shape == plan.shapes[i] and val.flags.c_contiguous):
                results[i] = val  # `_store` would keep `val[all slices]`: a view of all of it
            else:
                rest = True
        if rest:
            for i, val in enumerate(values):
                if results[i] is None:
                    self._store_one(results, i, val, t, plan, adopt)
        stats.gathered_bytes = ctx.gathered_bytes
        stats.cold_gathered_bytes = ctx.cold_gathered_bytes
        stats.add_rows(ctx)
        stats.result_bytes = sum([r.nbytes for r in results])
        return results, stats

    def _cast_whole(self, operands: list[Any], plan: _Plan) -> np.ndarray | None:
        """A cast-only map (`_cast_only`) whose argument and result have one shape and the
        same access (each tile reads the elements it writes), as one cast of the whole
        argument into the result: a cast rounds each element alone, so the tiles' values;
        one call of the cast loop in place of one per tile (GPT-2 small bf16's logits, f32
        to bf16 in 16 tiles: 8.1 -> 4.3 ms a forward). None when it does not apply."""
        i = self._cast_only
        assert i is not None
        x = operands[i]
        shape = plan.shapes[0]
        if type(x) is not np.ndarray or x.shape != shape or self.accesses[i] != self.accesses[self.n_in] or not self.accesses[i].is_projection:
            return None
        out = self._buffer(0, shape)
        bf16_vec.copyto(out, x)
        return out

    def _cast_into(self, results: list[Any], args: list[Any], t: _Tile, plan: _Plan) -> bool:
        """A cast-only map tile (`_cast_only`) as `np.copyto(result slice, argument)`: the
        dtype's cast loop, as the payload's `astype`, without the tile's own array and its
        copy. False (nothing done) unless the slice is a plain view of the argument's shape."""
        x = args[self._cast_only]  # type: ignore[index]
        drop, perm, index = t.stores[0]
        if perm is not None or type(x) is not np.ndarray or x.shape != t.tile_shape or any(d != slice(None) for d in drop):
            return False
        if results[0] is None:
            results[0] = self._buffer(0, plan.shapes[0])
        target = results[0][index]
        if type(target) is not np.ndarray or target.shape != x.shape:
            return False
        bf16_vec.copyto(target, x)
        return True

    @staticmethod
    def _fresh(values: list[Any], operands: list[Any]) -> bool:
        """Whether each value is an array of its own: not an operand's memory, not another value."""
        arrays = [x for x in operands if isinstance(x, np.ndarray)]
        for j, v in enumerate(values):
            if not isinstance(v, np.ndarray) or not v.flags.writeable or not v.flags.c_contiguous:
                return False
            if any(v is w for w in values[:j]) or any(np.may_share_memory(v, x) for x in arrays):
                return False
        return True

    def _store(self, results: list[Any], values: list[Any], t: _Tile, plan: _Plan, adopt: bool) -> None:
        """`KernelExecutor._write`, with the indices prepared; a whole-result value that is
        the kernel's own array becomes the result (no copy)."""
        for i, val in enumerate(values):
            self._store_one(results, i, val, t, plan, adopt)

    def _store_one(self, results: list[Any], i: int, val: Any, t: _Tile, plan: _Plan, adopt: bool) -> None:
        """`_store` of result `i`."""
        drop, perm, index = t.stores[i]
        if results[i] is None:
            shape = plan.shapes[i]
            if (adopt and plan.whole[i] and isinstance(val, np.ndarray) and val.dtype == self.result_dtypes[i]
                    and val.shape == t.tile_shape and val.flags.c_contiguous):
                kept = val[drop]
                if kept.shape == shape:
                    results[i] = kept
                    return
            results[i] = self._buffer(i, shape)
        full = val if getattr(val, "shape", None) == t.tile_shape else np.broadcast_to(np.asarray(val), t.tile_shape)
        kept = full[drop]
        results[i][index] = np.transpose(kept, perm) if perm is not None else kept

    def _direct_ok(self, plan: _Plan) -> bool:
        """Whether every tile's result store is a plain slice (no transpose, no dropped
        parallel loop of size > 1): the last k-tile's sum can then be written into the result."""
        if self.n_init != 1:
            return False
        acc = self.accesses[self.n_in]
        dims = [coeffs.index(1) for coeffs, _ in acc.forms if any(coeffs)]
        return all(t.stores[0][1] is None and all(t.tile_shape[d] == 1 for d in range(len(t.sizes)) if d not in dims) for t in plan.tiles)

    def _run_contraction(self, plan: _Plan, operands: list[Any], inits: list[Any], caps: list[Any], stats: KernelStats,
                         casts: tuple[tuple[np.dtype[Any], ...], ...]) -> tuple[list[np.ndarray], KernelStats]:
        """A contraction tile by tile: each k-tile's product added to the accumulator (the
        same sums in the same order as `_reduce`), the last one straight into the result's
        slice; a folded fill starts as one scalar of the result dtype (what `np.full` holds).
        `casts`: the operands' rounding casts still to apply per tile (`operand_casts`, less
        those applied to the whole operand already)."""
        dtype = self.result_dtypes[0]
        result = self._buffer(0, plan.shapes[0])
        fill = self.init_fills[0]
        acc: Any = None
        ahead = self._ahead(plan, operands, dtype) if len(plan.tiles) > 1 else None
        pending: deque[Any] = deque()
        for j, t in enumerate(plan.tiles):
            if t.new_par:
                if fill >= 0:  # what np.full((), v, dtype) does, without its Python wrapper
                    acc = np.empty((), dtype=dtype)
                    np.copyto(acc, caps[fill], casting="unsafe")
                else:
                    acc = self._init_accs(inits, caps, t.starts, t.sizes)[0]
            if ahead is None:
                c = self._tile_product(operands, t, dtype, casts)
            else:  # the next tiles' products on the pool's threads, summed here in tile order
                pool, threads = ahead
                while len(pending) < 2 * threads and j + len(pending) < len(plan.tiles):
                    pending.append(pool.submit(self._tile_product, operands, plan.tiles[j + len(pending)], dtype, casts))
                c = pending.popleft().result()
            drop, _, index = t.stores[0]
            if t.last_red:
                target = result[index]
                if isinstance(target, np.ndarray):
                    np.add(acc[drop] if acc.ndim else acc, c[drop], out=target)
                else:  # the slice is one element (integer indices, a 0-d result): not a view
                    result[index] = np.add(acc[drop] if acc.ndim else acc, c[drop])
            elif acc.ndim and acc.shape == c.shape and acc.dtype == c.dtype:
                np.add(acc, c, out=acc)
            elif not acc.ndim and acc.dtype == c.dtype and c.ndim and c.flags.writeable:  # the first k-tile: into its own product
                acc = np.add(acc, c, out=c)
            else:
                acc = acc + c
        stats.result_bytes = result.nbytes
        return [result], stats

    def _merge(self, plan: _Plan, operands: list[Any], inits: list[Any], caps: list[Any], stats: KernelStats,
               casts: tuple[tuple[np.dtype[Any], ...], ...]) -> tuple[list[np.ndarray], KernelStats]:
        """A bf16 contraction whose tiles split only parallel dims (each tile sums the whole
        reduction), first run: the tiles' result; then, on random operands laid out as these
        (`_probe`), the tiles and the whole domain as one tile (one oneDNN GEMM on dense
        operands: no window copies, no strided stores). When those two have the same bits,
        later runs take the whole-domain way (`plan.merged`), else the tiles for good.

        Each element is then the same sum in the same order, provided oneDNN's order for an
        element does not depend on the product's extent in m and n: measured so for rows
        (`onednn.py`) but not promised, hence the check on this machine, in this layout.
        A GEMM's order of operations does not depend on the values, and random operands
        (unlike zeros or small integers) expose any other order in a few elements. GPT-2
        small bf16 (qkv, MLP-up and logits products): the same bits, and its forward
        191 -> 178 ms (docs/benchmarks.md, emulator speed)."""
        results, stats = self._run_contraction(plan, operands, inits, caps, stats, casts)
        plan.merged = False
        whole = self._plan(operands, tuple(self.domain))
        bits = {2: np.uint16, 4: np.uint32, 8: np.uint64}.get(results[0].dtype.itemsize)
        if bits is None or not self._direct_ok(whole) or any(whole.tiles[0].modes[i] == 2 for i in self.contraction):  # type: ignore[index, union-attr]  # (mode 2: a copy)
            return results, stats
        probe = list(operands)
        for i in self.contraction:  # type: ignore[union-attr]
            probe[i] = _probe(operands[i])
        probe_inits = [_probe(x) for x in inits]  # an accumulator's initial values too
        tiled, _ = self._run_contraction(plan, probe, probe_inits, caps, KernelStats(), casts)
        got, _ = self._run_contraction(whole, probe, probe_inits, caps, KernelStats(), casts)  # (`tiled` holds its buffer)
        if tiled[0].shape == got[0].shape and np.array_equal(tiled[0].view(bits), got[0].view(bits)):
            plan.merged = (whole, self._layout(operands))
        return results, stats

    def _layout(self, operands: list[Any]) -> tuple[Any, ...]:
        """The contraction operands' strides (what oneDNN's kernel choice may follow)."""
        return tuple(getattr(operands[i], "strides", None) for i in self.contraction)  # type: ignore[union-attr]

    def _ahead(self, plan: _Plan, operands: list[Any], dtype: np.dtype[Any]) -> tuple[ThreadPoolExecutor, int] | None:
        """The pool for this run's tile products (`sgemm.pool`), when there are several and
        each goes to MKL (f32 operands, `sgemm.takes`); else None."""
        if plan.mkl_tiles is None:
            a, b = self.contraction  # type: ignore[misc]
            r = self.roles
            sizes = plan.tiles[0].sizes
            plan.mkl_tiles = (
                len(plan.tiles) >= 2 and dtype == sgemm.F32 and r is not None
                and all(getattr(operands[i], "dtype", None) == sgemm.F32 and not self.operand_casts[j] for j, i in enumerate((a, b)))
                and sgemm.takes(math.prod(sizes[d] for d in r.batch), math.prod(sizes[d] for d in r.m + r.n + r.k))
            )
        return sgemm.pool() if plan.mkl_tiles else None

    def _tile_product(self, operands: list[Any], t: _Tile, dtype: np.dtype[Any], casts: tuple[tuple[np.dtype[Any], ...], ...]) -> Any:
        """One tile's product: its operand cuts (as in the tile loop), then `_product`."""
        args: list[Any] = [None] * len(operands)
        for i in self.contraction:  # type: ignore[union-attr]
            x, cut, mode = operands[i], t.cuts[i], t.modes[i]  # type: ignore[index]
            if mode == 0 and type(x) is np.ndarray:  # as in the tile loop
                args[i] = x
            elif mode == 1 and type(x) is np.ndarray:
                view = x[cut[1]]  # type: ignore[index]
                args[i] = (view.transpose(cut[2]) if cut[2] is not None else view).reshape(cut[3])  # type: ignore[index]
            else:
                args[i] = _apply(x, cut, self.accesses[i], t.starts, t.sizes)
        return self._product(args, dtype, t.sizes, casts)

    def _product(self, args: list[Any], dtype: np.dtype[Any], sizes: tuple[int, ...],
                 casts: tuple[tuple[np.dtype[Any], ...], ...] | None = None) -> Any:
        """One tile's `sum over k of a * b` (`_contract`'s batched matmul), shaped as the
        accumulator; the operands rounded by `casts` first (default: `operand_casts`)."""
        a, b = self.contraction  # type: ignore[misc]
        cp = self._contract_plans.get(sizes)
        if cp is None:
            r = self.roles
            assert r is not None
            rank = len(sizes)
            da, db, do = self.accesses[a].dims, self.accesses[b].dims, self.accesses[self.n_in].dims
            prod = lambda ds: math.prod(sizes[d] for d in ds)  # noqa: E731
            order = r.batch + r.m + r.n
            cp = (
                r.batch + r.m + r.k + [d for d in range(rank) if d not in da], (prod(r.batch), prod(r.m), prod(r.k)),
                r.batch + r.k + r.n + [d for d in range(rank) if d not in db], (prod(r.batch), prod(r.k), prod(r.n)),
                [sizes[d] for d in order], sorted(range(len(order)), key=lambda i: order[i]),
                [sizes[d] if d in do else 1 for d in range(rank)],
            )
            ident = lambda p: p == list(range(len(p)))  # noqa: E731
            cp = tuple(None if i in (0, 2, 5) and ident(x) else x for i, x in enumerate(cp))  # identity transposes skipped
            self._contract_plans[sizes] = cp
        perm_a, shape_a, perm_b, shape_b, c_shape, c_perm, out_shape = cp
        ca, cb = self.operand_casts if casts is None else casts
        at = apply_casts(args[a], ca) if ca else np.asarray(args[a])
        bt = apply_casts(args[b], cb) if cb else np.asarray(args[b])
        at = (at.transpose(perm_a) if perm_a is not None else at).reshape(shape_a)
        bt = (bt.transpose(perm_b) if perm_b is not None else bt).reshape(shape_b)
        c = tile_matmul(at, bt, dtype).reshape(c_shape)
        return (c.transpose(c_perm) if c_perm is not None else c).reshape(out_shape)

    def _contract_into(self, args: list[Any], accs: list[Any], sizes: tuple[int, ...],
                       casts: tuple[tuple[np.dtype[Any], ...], ...] | None) -> list[Any]:
        """`_contract` then `acc + prod`, with the transposes prepared and the sum in place."""
        acc = accs[0]
        c = self._product(args, acc.dtype, sizes, casts)
        if c.dtype == acc.dtype and c.shape == acc.shape:
            np.add(acc, c, out=acc)
            return [acc]
        return [acc + c]
