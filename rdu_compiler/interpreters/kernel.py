"""Run one `rdu.kernel` tile by tile on numpy arrays.

For every tile of the kernel's tiled iteration domain (parallel loops outside, reduction
loops inside, accumulating) the executor cuts each operand's tile out of its tensor with
the operand's access pattern, evaluates the payload on the whole tile at once, and writes
the result tile. Contractions (`out += a * b`) go to numpy's matmul (BLAS) per tile;
other reductions evaluate the payload and reduce with the combiner's ufunc. A payload
whose use of the accumulator is not a recognised combiner is refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects import arith
from xdsl.ir import Operation

from rdu_compiler.dialects.rdu import KernelOp, Pattern
from rdu_compiler.dtypes import numpy_dtype
from rdu_compiler.errors import EmulatorError
from rdu_compiler.interpreters import bf16_vec, folds, onednn, sgemm
from rdu_compiler.interpreters.payload import CompiledPayload, TileContext
from rdu_compiler.ir import int_values, op_name
from rdu_compiler.kernel.access import Access, tiles
from rdu_compiler.kernel.facts import kernel_facts
from rdu_compiler.kernel.payload import (
    COMBINERS,
    IndexSelect,
    cast_chain,
    contraction_dims,
    contraction_mul,
    reduction_combiner,
    reduction_plan,
)
from rdu_compiler.kernel.traffic import counted_operands


class Empty:
    """An uninitialised tensor (`tensor.empty`): a shape and dtype, no data."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype[Any]):
        self.shape = shape
        self.dtype = dtype


@dataclass
class KernelStats:
    """What one kernel run moved and executed (bytes, tiles)."""

    tiles: int = 0
    operand_bytes: list[int] = field(default_factory=list)  # per input/init operand, tile loads summed
    result_bytes: int = 0
    gathered_bytes: int = 0
    cold_gathered_bytes: int = 0  # a tiered row gather's DDR rows (rdu-tier-rows)
    rows_read: tuple[int, int] | None = None  # a tiered row gather: (rows read from HBM, from DDR)
    pmu_probe_bytes: int = 0  # a hash probe's reads of its PMU-resident index

    def add_rows(self, ctx: Any) -> None:
        """Add a tile's (HBM rows, DDR rows) of a tiered row gather (`TileContext.rows_read`)."""
        if ctx.split is not None:
            h, d = self.rows_read or (0, 0)
            self.rows_read = (h + ctx.rows_read[0], d + ctx.rows_read[1])


def projection_cut(access: Access, starts: tuple[int, ...], sizes: tuple[int, ...]) -> tuple[tuple[Any, ...], list[int] | None, list[int]]:
    """A projection access's tile as basic indexing: (the index: constants and slices, the
    transpose that puts the kept dims in loop order or None, the shape broadcastable to the
    tile's domain)."""
    index: list[Any] = []
    dims: list[int] = []
    for coeffs, const in access.forms:
        if not any(coeffs):
            index.append(const)
            continue
        d = coeffs.index(1)
        index.append(slice(starts[d] + const, starts[d] + const + sizes[d]))
        dims.append(d)
    order = sorted(range(len(dims)), key=lambda i: dims[i])
    return tuple(index), (order if order != list(range(len(dims))) else None), [sizes[d] if d in dims else 1 for d in range(len(sizes))]


def _gather(arr: Any, access: Access, starts: tuple[int, ...], sizes: tuple[int, ...]) -> Any:
    """The operand's values for a tile, as an array broadcastable to the tile's domain shape."""
    rank = len(sizes)
    if not access.forms:
        return np.asarray(arr).reshape((1,) * rank)
    if access.is_projection:
        index, order, shape = projection_cut(access, starts, sizes)
        view = arr[index]
        view = np.transpose(view, order) if order is not None else view
        return view.reshape(shape)
    grids = [np.arange(s, s + n).reshape([n if i == d else 1 for i in range(rank)]) for d, (s, n) in enumerate(zip(starts, sizes, strict=True))]
    idx = [const + sum(c * grids[d] for d, c in enumerate(coeffs) if c) for coeffs, const in access.forms]
    return arr[tuple(np.broadcast_arrays(*idx))] if idx else arr


def operand_aliases(kernel: KernelOp, accesses: Sequence[Access]) -> list[int]:
    """Per block argument, the first argument the kernel binds to the same input tensor
    with the same access (itself if none): both read the same values on every tile."""
    ins = list(kernel.inputs)
    out = list(range(len(kernel.body.block.args)))
    for i, v in enumerate(ins):
        for j in range(i):
            if ins[j] is v and accesses[j] == accesses[i]:
                out[i] = out[j]
                break
    return out


class KernelExecutor:
    """A kernel compiled once for repeated tile-by-tile execution."""

    #: Payloads evaluate elementwise ops into dead temporaries (`CompiledPayload(inplace=)`).
    inplace = False

    def __init__(self, kernel: KernelOp):
        self.kernel = kernel
        facts = kernel_facts(kernel)
        self.name = facts.label
        self.domain, self.tile = facts.domain, facts.tile
        self.n_in, self.n_init = facts.n_in, facts.n_init
        self.accesses = facts.accesses
        self.red, self.par = facts.red, facts.par
        self.result_dtypes = [numpy_dtype(kernel.body.block.args[self.n_in + i].type) for i in range(self.n_init)]
        fills = kernel.init_fills
        self.init_fills = int_values(fills) if fills is not None else [-1] * self.n_init
        block = kernel.body.block
        self.used = facts.used
        self.counted = counted_operands(kernel)  # the cost model's rule (kernel.traffic)
        self.kind = facts.kind
        self.gather_burst = 1  # bytes per gather access; the emulator sets its tier's (TierSpec.burst_bytes)
        self.gather_split: tuple[int, int] | None = None  # (hot rows, DDR burst) of a tiered row gather
        if facts.non_projection_output() is not None:
            raise EmulatorError(f"kernel '{self.name}': output access pattern must be a projection")
        self.contraction: tuple[int, int] | None = None
        self.combiners: list[tuple[str, int]] = []
        if self.kind == Pattern.SCAN:
            self.payload = CompiledPayload(block, self.name, inplace=self.inplace)
            return
        if self.kind == Pattern.SCATTER:
            self._setup_scatter(kernel)
            return
        if self.kind == Pattern.HASH_PROBE:
            self.hash_seeds = (int(kernel.hash_seeds.get_values()[0]), int(kernel.hash_seeds.get_values()[1]))  # type: ignore[union-attr]
            self.miss_row = kernel.miss_row.value.data if kernel.miss_row is not None else -1
            return
        aliases = operand_aliases(kernel, self.accesses)
        if not self.red:
            self.payload = CompiledPayload(block, self.name, inplace=self.inplace, aliases=aliases)
            return
        plan = reduction_plan(block, self.n_in, [not r.uses for r in kernel.results])
        self.contraction = plan.contraction
        self.operand_casts: tuple[tuple[np.dtype[Any], ...], ...] = ()
        if self.contraction is not None:
            mul = contraction_mul(block, self.n_in)
            assert mul is not None
            self.operand_casts = tuple(rounding_casts(cast_chain(mul, block.args[i])) for i in self.contraction)
        self.selects: dict[int, IndexSelect] = {}
        for i, role in enumerate(plan.roles):
            if role.kind == "unrecognised":
                raise EmulatorError(
                    f"kernel '{self.name}': reduction result {i} is not 'acc = combine(acc, f(inputs))' "
                    f"with combine one of {sorted(COMBINERS)}; refusing rather than guessing"
                )
            if role.select is not None:
                if len(self.red) != 1:
                    raise EmulatorError(
                        f"kernel '{self.name}': an index-of-best or last-write reduction (argmax/argmin, scatter; "
                        f"result {i}) over {len(self.red)} loops is not supported (one reduction loop only)"
                    )
                sel = role.select
                if not sel.last_match and plan.roles[sel.value_result].kind != "combine":
                    raise EmulatorError(f"kernel '{self.name}': argmax/argmin result {i} without its value result")
                self.selects[i] = sel
        if plan.misread is not None:
            raise EmulatorError(f"kernel '{self.name}': the accumulator is read outside its combiner")
        self.payload = CompiledPayload(block, self.name, set(plan.skip), inplace=self.inplace, aliases=aliases)
        for i, role in enumerate(plan.roles):
            if role.kind == "select":
                self.combiners.append(("select", i))
            elif role.kind == "combine":
                assert role.expr is not None
                self.combiners.append((COMBINERS[role.combiner], self.payload.slots[role.expr]))
            else:  # dead: never read, not computed (its tensor stays Empty)
                self.combiners.append(("", -1))

    def _select_index(self, i: int, vals: list[Any], accs: list[Any], sizes: tuple[int, ...]) -> Any:
        """One tile of an argmax/argmin result, exactly as the sequential payload would do it:
        the running value before each step (a prefix reduction, NaN included), the steps
        whose comparison updates the index, and the last such step's index."""
        from rdu_compiler.interpreters.payload import compare_fn

        sel = self.selects[i]
        ax = self.red[0]
        x = np.broadcast_to(np.asarray(vals[self.payload.slots[sel.x]]), sizes)
        if sel.last_match:  # the condition reads no accumulator: the last step where it holds
            cond = x.astype(bool)
        else:
            assert sel.cmp is not None
            ufunc = getattr(np, self.combiners[sel.value_result][0])
            acc_v = np.broadcast_to(accs[sel.value_result], [1 if d == ax else n for d, n in enumerate(sizes)])
            running = ufunc.accumulate(np.concatenate([acc_v.astype(x.dtype), x], axis=ax), axis=ax)
            prev = np.take(running, range(sizes[ax]), axis=ax)
            cond = compare_fn(sel.cmp)(x, prev) if sel.x_is_lhs else compare_fn(sel.cmp)(prev, x)
        update = np.asarray(cond) if sel.update_on_true else ~np.asarray(cond)
        e = np.broadcast_to(np.asarray(vals[self.payload.slots[sel.e]]), sizes)
        last = sizes[ax] - 1 - np.argmax(np.flip(update, axis=ax), axis=ax)
        picked = np.take_along_axis(e, np.expand_dims(last, ax), axis=ax)
        acc_i = accs[i]
        return np.where(update.any(axis=ax, keepdims=True), picked, acc_i).astype(acc_i.dtype, copy=False)

    # ------------------------------------------------------------------ execution

    def run(self, ins: list[Any], inits: list[Any], caps: list[Any], check_buffers: bool = True) -> tuple[list[np.ndarray], KernelStats]:
        """Execute every tile. Arrays in, arrays out (one per result)."""
        stats = KernelStats(operand_bytes=[0] * (self.n_in + self.n_init))
        results = [np.empty(self._result_shape(i, inits[i]), dtype=self.result_dtypes[i]) for i in range(self.n_init)]
        if check_buffers:
            self._check_buffers(ins, inits)
        if self.kind == Pattern.SCAN:
            return self._scan(ins, inits, results, stats)
        if self.kind == Pattern.SCATTER:
            return self._scatter(ins, inits, caps, results, stats)
        if self.kind == Pattern.HASH_PROBE:
            return self._hash_probe(ins, caps, results, stats)
        operands = list(ins) + list(inits)
        order = list(self.par) + list(self.red)
        current_par: tuple[int, ...] | None = None
        prev_starts: tuple[int, ...] = ()
        prev_sizes: tuple[int, ...] = ()
        accs: list[Any] = []
        tile_iter = tiles(self.domain, self.tile, order)
        for starts, sizes in tile_iter:
            par_key = tuple(starts[d] for d in self.par)
            if self.red and par_key != current_par:
                if current_par is not None:
                    self._write(results, accs, prev_starts, prev_sizes)
                accs = self._init_accs(inits, caps, starts, sizes)
                current_par = par_key
            stats.tiles += 1
            self._count(operands, starts, sizes, stats)
            args = self._args(operands, caps, starts, sizes, include_inits=not self.red)
            ctx = TileContext(starts, sizes, self.gather_burst, self.gather_split)
            if not self.red:
                vals = self.payload.run(args, ctx)
                self._write(results, [vals[s] for s in self.payload.yield_slots], starts, sizes)
            else:
                accs = self._reduce(args, accs, ctx, sizes)
                prev_starts, prev_sizes = starts, sizes
            stats.gathered_bytes += ctx.gathered_bytes
            stats.cold_gathered_bytes += ctx.cold_gathered_bytes
            stats.add_rows(ctx)
        if self.red and current_par is not None:
            self._write(results, accs, prev_starts, prev_sizes)
        stats.result_bytes = sum(r.nbytes for r in results)
        return results, stats

    def _result_shape(self, i: int, init: Any) -> tuple[int, ...]:
        return tuple(init.shape)

    def _check_buffers(self, ins: list[Any], inits: list[Any]) -> None:
        bufs = self.kernel.buffers
        if bufs is None:
            return
        operands = list(ins) + list(inits)
        full = tuple(min(t, d) for t, d in zip(self.tile, self.domain, strict=True))
        zeros = (0,) * len(full)
        for i, (buf, acc) in enumerate(zip(bufs.data, self.accesses, strict=True)):
            if not acc.forms:
                continue  # scalars live in PCU registers
            itemsize = _itemsize(operands[i])
            elements = math.prod(acc.extent(zeros, full))
            if (self.kind == Pattern.SCATTER and i >= self.n_in) or (self.kind == Pattern.HASH_PROBE and self.n_in == 2 and i == 1):
                elements = math.prod(operands[i].shape)  # resident: a scatter's destination, a probe's index
            need = elements * itemsize * buf.depth.data
            have = buf.pmus.data * buf.pmu_capacity.data
            if need > have:
                raise EmulatorError(
                    f"kernel '{self.name}' operand {i}: a tile needs {need} B (x{buf.depth.data} buffered) "
                    f"but its {buf.pmus.data} PMU(s) hold {have} B; the emulator refuses programs that "
                    "break PMU capacity (re-run rdu-tile / rdu-allocate)"
                )

    def _count(self, operands: list[Any], starts: tuple[int, ...], sizes: tuple[int, ...], stats: KernelStats) -> None:
        for i, (arr, acc) in enumerate(zip(operands, self.accesses, strict=True)):
            if isinstance(arr, Empty) or not self.counted[i]:
                continue
            stats.operand_bytes[i] += math.prod(acc.extent(starts, sizes)) * _itemsize(arr)

    def _args(self, operands: list[Any], caps: list[Any], starts: tuple[int, ...], sizes: tuple[int, ...], include_inits: bool) -> list[Any]:
        args: list[Any] = []
        for i, (arr, acc) in enumerate(zip(operands, self.accesses, strict=True)):
            is_init = i >= self.n_in
            if not self.used[i] or (is_init and not include_inits) or isinstance(arr, Empty):
                args.append(None)
                continue
            args.append(_gather(arr, acc, starts, sizes))
        args.extend(caps)
        return args

    def _init_accs(self, inits: list[Any], caps: list[Any], starts: tuple[int, ...], sizes: tuple[int, ...]) -> list[Any]:
        accs = []
        red_sizes = list(sizes)
        for d in self.red:
            red_sizes[d] = 1
        for i, init in enumerate(inits):
            if self.init_fills[i] >= 0:  # a folded fill: the accumulators start at a constant
                dims = self.accesses[self.n_in + i].dims
                shape = [red_sizes[d] if d in dims else 1 for d in range(len(sizes))]
                accs.append(np.full(shape, caps[self.init_fills[i]], dtype=self.result_dtypes[i]))
                continue
            if isinstance(init, Empty):
                raise EmulatorError(f"kernel '{self.name}': reduction into an uninitialised tensor")
            acc = _gather(init, self.accesses[self.n_in + i], starts, tuple(red_sizes))
            accs.append(np.array(acc, dtype=self.result_dtypes[i]))
        return accs

    def _reduce(self, args: list[Any], accs: list[Any], ctx: TileContext, sizes: tuple[int, ...]) -> list[Any]:
        if self.contraction is not None:
            a, b = self.contraction
            ca, cb = self.operand_casts
            prod = _contract(apply_casts(args[a], ca), apply_casts(args[b], cb), self.accesses[a], self.accesses[b], self.accesses[self.n_in], sizes, accs[0].dtype)
            if prod is not None:
                return [accs[0] + prod]
        vals = self.payload.run(args, ctx)
        out = []
        for (ufunc_name, slot), acc in zip(self.combiners, accs, strict=True):
            if ufunc_name == "select":
                out.append(self._select_index(slot, vals, accs, sizes))
                continue
            if not ufunc_name:
                out.append(acc)
                continue
            ufunc = getattr(np, ufunc_name)
            expr = vals[slot]
            if getattr(expr, "shape", None) != sizes:  # (an array of the tile's shape is reduced as it is: the same values)
                expr = np.broadcast_to(expr, sizes)
            if expr.dtype == folds.BF16:  # ufunc.reduce's bits, by a fold where that is faster
                part = folds.reduce(ufunc, expr, self.red)
            else:
                part = ufunc.reduce(expr, axis=self.red, keepdims=True)
            out.append(ufunc(acc, part).astype(acc.dtype, copy=False))
        return out

    def _write(self, results: list[np.ndarray], values: list[Any], starts: tuple[int, ...], sizes: tuple[int, ...]) -> None:
        """Store each result tile through its (projection) output map."""
        tile_shape = list(sizes)
        for d in self.red:
            tile_shape[d] = 1
        rank = len(sizes)
        for i, (res, val) in enumerate(zip(results, values, strict=True)):
            acc = self.accesses[self.n_in + i]
            full = np.broadcast_to(np.asarray(val), tile_shape)
            dims = [coeffs.index(1) for coeffs, _ in acc.forms if any(coeffs)]
            drop = tuple(0 if d not in dims else slice(None) for d in range(rank))
            if any(tile_shape[d] != 1 for d in range(rank) if d not in dims):
                raise EmulatorError(f"kernel '{self.name}': result {i} does not depend on a parallel loop of size > 1")
            kept = full[drop]  # axes: dims in ascending order
            ascending = sorted(dims)
            tile = np.transpose(kept, [ascending.index(d) for d in dims]) if dims != ascending else kept
            index = tuple(
                slice(starts[c.index(1)], starts[c.index(1)] + sizes[c.index(1)]) if any(c) else k for c, k in acc.forms
            )
            res[index] = tile

    # ------------------------------------------------------------------ scatter

    def _setup_scatter(self, kernel: KernelOp) -> None:
        """A scatter's payload yields `combine(update, acc)` with a known combiner (applied
        with the combiner's `ufunc.at`, in domain order) or a value that does not read the
        accumulator (a plain write: the last one wins)."""
        block = kernel.body.block
        acc = block.args[self.n_in]
        yielded = block.last_op.operands[0]  # type: ignore[union-attr]
        self.scatter_dims = int_values(kernel.scatter_dims)  # type: ignore[arg-type]
        self.scatter_ufunc: str = ""
        if acc.uses:
            found = reduction_combiner(block, acc, yielded)
            if found is None:
                raise EmulatorError(
                    f"kernel '{self.name}': the scatter's payload is not 'combine(update, acc)' with combine one of "
                    f"{sorted(COMBINERS)}; refusing rather than guessing"
                )
            self.scatter_ufunc = COMBINERS[found[0]]
            skip = {yielded.owner} if isinstance(yielded.owner, Operation) else set()
            self.payload = CompiledPayload(block, self.name, skip)
            self.scatter_slot = self.payload.slots[found[1]]
        else:
            self.payload = CompiledPayload(block, self.name)
            self.scatter_slot = self.payload.yield_slots[0]

    def _scatter(self, ins: list[Any], inits: list[Any], caps: list[Any], results: list[np.ndarray], stats: KernelStats) -> tuple[list[np.ndarray], KernelStats]:
        """Tile by tile over the updates: each point's value goes to the destination at its
        map plus its index columns (bounds-checked), combined in domain order."""
        dest_in = inits[0]
        if isinstance(dest_in, Empty):
            raise EmulatorError(f"kernel '{self.name}': scatter into an uninitialised tensor")
        dest = results[0]
        dest[...] = np.asarray(dest_in)
        stats.operand_bytes[self.n_in] = dest.nbytes if self.counted[self.n_in] else 0
        operands = list(ins) + list(inits)
        rank = len(self.domain)
        for starts, sizes in tiles(self.domain, self.tile, list(range(rank))):
            stats.tiles += 1
            for i in range(self.n_in):
                if self.counted[i] and not isinstance(operands[i], Empty):
                    stats.operand_bytes[i] += math.prod(self.accesses[i].extent(starts, sizes)) * _itemsize(operands[i])
            args = self._args(operands, caps, starts, sizes, include_inits=False)
            ctx = TileContext(starts, sizes, self.gather_burst, self.gather_split)
            vals = self.payload.run(args, ctx)
            stats.gathered_bytes += ctx.gathered_bytes
            stats.cold_gathered_bytes += ctx.cold_gathered_bytes
            stats.add_rows(ctx)
            value = np.broadcast_to(np.asarray(vals[self.scatter_slot], dtype=dest.dtype), sizes).reshape(-1)
            grids = [np.arange(s, s + n).reshape([n if j == d else 1 for j in range(rank)]) for d, (s, n) in enumerate(zip(starts, sizes, strict=True))]
            coords = []
            for coeffs, const in self.accesses[self.n_in].forms:
                coords.append(np.broadcast_to(const + sum(c * grids[d] for d, c in enumerate(coeffs) if c), sizes).astype(np.int64))
            for c, d in enumerate(self.scatter_dims):
                col = np.broadcast_to(np.asarray(_gather(operands[c], self.accesses[c], starts, sizes)), sizes).astype(np.int64)
                coords[d] = coords[d] + col
            flat_coords = [x.reshape(-1) for x in coords]
            for d, x in enumerate(flat_coords):
                bad = (x < 0) | (x >= dest.shape[d])
                if bad.any():
                    raise EmulatorError(
                        f"kernel '{self.name}': scatter index {int(x[bad][0])} is out of bounds for dim {d} of the "
                        f"destination {list(dest.shape)}; check the model's indices"
                    )
            if self.scatter_ufunc:
                getattr(np, self.scatter_ufunc).at(dest, tuple(flat_coords), value)
            else:  # a plain write, in domain order: the last write to a point wins
                flat = np.asarray(np.ravel_multi_index(tuple(flat_coords), dest.shape), dtype=np.int64)
                _, first_from_end = np.unique(flat[::-1], return_index=True)
                last = flat.size - 1 - first_from_end
                dest.reshape(-1)[flat[last]] = value[last]
        stats.result_bytes = dest.nbytes
        return results, stats

    # ------------------------------------------------------------------ hash probe

    def _hash_probe(self, ins: list[Any], caps: list[Any], results: list[np.ndarray], stats: KernelStats) -> tuple[list[np.ndarray], KernelStats]:
        """Tile by tile over the IDs: each ID's row number in the cuckoo index (capture 0),
        the kernel's `miss_row` (-1 by default) when absent (`embedding.probe.probe`: both candidate buckets read, every slot
        compared). Each ID reads BUCKETS_PER_LOOKUP buckets of BUCKET_BYTES from the index's
        tier, charged at its burst (`kernel.traffic.gathered_bytes`)."""
        from rdu_compiler.embedding.probe import BUCKET_BYTES, BUCKETS_PER_LOOKUP, probe
        from rdu_compiler.kernel.traffic import burst_round

        resident = len(ins) == 2  # the index whole in the kernel's PMUs (rdu-tile), else a capture
        ids, index, out = np.asarray(ins[0]), np.asarray(ins[1] if resident else caps[0]), results[0]
        per_id = BUCKETS_PER_LOOKUP * (BUCKET_BYTES if resident else burst_round(BUCKET_BYTES, self.gather_burst))
        if resident and self.counted[1]:
            stats.operand_bytes[1] = index.nbytes  # read once, whole
        for starts, sizes in tiles(self.domain, self.tile, [0]):
            s, n = starts[0], sizes[0]
            stats.tiles += 1
            if self.counted[0]:
                stats.operand_bytes[0] += n * ids.itemsize
            rows = probe(index, ids[s : s + n], self.hash_seeds)
            out[s : s + n] = np.where(rows < 0, self.miss_row, rows)
            if resident:
                stats.pmu_probe_bytes += n * per_id
            else:
                stats.gathered_bytes += n * per_id
        stats.result_bytes = out.nbytes
        return results, stats

    def _scan(self, ins: list[Any], inits: list[Any], results: list[np.ndarray], stats: KernelStats) -> tuple[list[np.ndarray], KernelStats]:
        dim = self.kernel.scan_dim.value.data  # type: ignore[union-attr]
        inclusive = bool(self.kernel.scan_inclusive.value.data)  # type: ignore[union-attr]
        comb = self.kernel.body.block.last_op.operands[0].owner  # type: ignore[union-attr]
        name = op_name(comb) if isinstance(comb, Operation) else ""
        if name not in ("arith.addi", "arith.addf", "arith.muli", "arith.mulf"):
            raise EmulatorError(f"kernel '{self.name}': scan combiner '{name}' is not supported (add or mul only)")
        x = np.asarray(ins[0])
        fn = np.cumsum if name.endswith(("addi", "addf")) else np.cumprod
        acc = _scan_accumulator(results[0].dtype)
        full = fn(x, axis=dim, dtype=acc)
        out = full.astype(results[0].dtype) if acc != results[0].dtype else full
        if not inclusive:
            init = np.asarray(inits[1]) if not isinstance(inits[1], Empty) else np.zeros(results[1].shape, results[0].dtype)
            shifted = np.concatenate([np.expand_dims(init, dim), np.take(out, range(x.shape[dim] - 1), axis=dim)], axis=dim)
            out = shifted
        results[0][...] = out
        results[1][...] = np.take(full, -1, axis=dim)
        stats.tiles = 1
        stats.operand_bytes[0] = x.nbytes
        stats.result_bytes = sum(r.nbytes for r in results)
        return results, stats


def _scan_accumulator(dtype: Any) -> Any:
    """The running value's type of a scan over `dtype`: PyTorch's CPU reference keeps
    `acc_type` (float64 for float32, float32 for float16 and bfloat16) and rounds each output
    once; a scan is sequential, so a float32 running sum over thousands of elements drifts
    from it by far more than the fuzz's 1e-5 (seed 34223: a cumsum over 4,800 values).
    Integers wrap the same in any width, so they keep their own type."""
    dt = np.dtype(dtype)
    if dt in (np.float32, np.float64):
        return np.float64
    if dt.kind == "f" or dt.name == "bfloat16":
        return np.float32
    return dt


def _itemsize(arr: Any) -> int:
    return int(np.asarray(arr).dtype.itemsize) if not isinstance(arr, Empty) else int(arr.dtype.itemsize)


#: Up to this many reduction steps a tile's contraction is an ordered multiply-add.
SMALL_K = 8


def rounding_casts(chain: list[Operation]) -> tuple[np.dtype[Any], ...]:
    """The result dtypes of a contraction operand's casts (`cast_chain`) up to its last
    truncf: what must be applied to the operand before the product. The widening extf
    casts after it are exact and left to the product (`tile_matmul`'s `dtype`)."""
    last = max((i for i, op in enumerate(chain) if isinstance(op, arith.TruncFOp)), default=-1)
    return tuple(numpy_dtype(op.results[0].type) for op in chain[:last + 1])


def apply_casts(x: Any, dtypes: tuple[np.dtype[Any], ...]) -> Any:
    """x converted through each dtype in turn (`rounding_casts`: the payload's truncf
    rounding, round-to-nearest-even as the payload evaluator's `astype`)."""
    for dt in dtypes:
        r = bf16_vec.to_bf16(x) if dt == bf16_vec.BF16 else None  # torch's loop, the same bits
        x = r if r is not None else np.asarray(x).astype(dt)
    return x


def tile_matmul(a: np.ndarray, b: np.ndarray, dtype: np.dtype[Any] | None = None) -> np.ndarray:
    """`a @ b` for one tile ((batch, m, k) @ (batch, k, n)) in `dtype` (default: a's), such
    that a row's result does not depend on the tile's height, as a PCU computes identical
    rows identically.

    bf16 operands with an f32 `dtype` are a PCU's bf16-in, f32-accumulate product: exact
    products, f32 sums. Through oneDNN's bf16 matmul when it applies (`onednn.matmul`: its
    summation order, bf16 subnormals read as zero), else widened to f32 and summed as below.
    Other operands are first converted to `dtype`.

    For k <= SMALL_K on floats it is an ordered multiply-add (c = a_0 b_0, then c += a_i b_i,
    each op rounded alone). numpy's sgemm rounds the same row differently in tiles of
    different heights (measured at k = 2: 497 of 2,000 random rows differ between 256- and
    8-row tiles). That turned exact ties into an emulator-only argmax (fuzz seed 40138).
    Larger k goes to a library sgemm (`sgemm.matmul`: MKL on one thread on Intel CPUs,
    else np.matmul's OpenBLAS), whose rounding still depends on the tile's shape (a known
    limit, docs/benchmarks.md fuzz section).
    """
    k = a.shape[-1]
    if dtype is not None and (a.dtype != dtype or b.dtype != dtype):
        if a.dtype == onednn.BF16 and b.dtype == onednn.BF16 and dtype == onednn.F32 and k > SMALL_K:
            c = onednn.matmul(a, b)
            if c is not None:
                return c
        a = np.asarray(a, dtype=dtype)
        b = np.asarray(b, dtype=dtype)
    if k > SMALL_K or a.dtype.kind != "f" or k == 0:
        macs = a.size * b.shape[-1]  # (batch x) m x k x n
        if k <= SMALL_K or macs < sgemm.OPENBLAS_ONE_THREAD:
            return np.matmul(a, b)
        if macs >= sgemm.MIN_MACS and a.ndim == 3:
            c = sgemm.matmul(a, b)
            if c is not None:
                return c
        return sgemm.numpy_matmul(a, b)
    c = a[..., :, 0:1] * b[..., 0:1, :]
    for i in range(1, k):
        c = c + a[..., :, i:i + 1] * b[..., i:i + 1, :]
    return c


def _contract(a: Any, b: Any, acc_a: Access, acc_b: Access, acc_o: Access, sizes: tuple[int, ...], dtype: np.dtype[Any]) -> Any:
    """sum over k of a*b as one batched matmul on the tile, or None if the dims do not fit."""
    da, db, do = acc_a.dims, acc_b.dims, acc_o.dims
    rank = len(sizes)
    roles = contraction_dims(acc_a, acc_b, acc_o, rank)
    if roles is None:
        return None
    batch, m, n, k = roles.batch, roles.m, roles.n, roles.k
    rest_a = [d for d in range(rank) if d not in da]
    rest_b = [d for d in range(rank) if d not in db]
    prod = lambda ds: math.prod(sizes[d] for d in ds)  # noqa: E731
    at = np.transpose(np.asarray(a), batch + m + k + rest_a).reshape(prod(batch), prod(m), prod(k))
    bt = np.transpose(np.asarray(b), batch + k + n + rest_b).reshape(prod(batch), prod(k), prod(n))
    c = tile_matmul(at, bt, dtype).reshape([sizes[d] for d in batch + m + n])
    order = batch + m + n
    c = np.transpose(c, sorted(range(len(order)), key=lambda i: order[i]))
    return c.reshape([sizes[d] if d in do else 1 for d in range(rank)])
