"""Carry this project's custom ops (`torch.library`, namespace `rdu`) through torch-mlir.

torch-mlir's FX importer turns an op it has no definition for into an opaque
`torch.operator "torch.rdu.<name>"`, which its linalg pipeline refuses ("failed to legalize
operation 'torch.operator'", llvm/torch-mlir#3596; `backend-legal-ops` only keeps aten ops).
A `func.call` of an external function gets through the lowering but not the
linalg-on-tensors backend contract, which refuses `func.call`. What the contract accepts and
no canonicalisation erases is a `linalg.generic` carrying `library_call`, MLIR's own field
for "this op is a call of that library function". `carry` rewrites each op of `CARRIED`, in
the torch-dialect text before the pipelines run, into such a marker over builtin tensors:

```mlir
%t0 = torch_c.to_builtin_tensor %ids : !torch.vtensor<[8],si64> -> tensor<8xi64>
%t1 = torch_c.to_builtin_tensor %index : !torch.vtensor<[64,4,2],si64> -> tensor<64x4x2xi64>
%e = tensor.empty() : tensor<8xi64>
%t2 = linalg.generic {indexing_maps = [(d0) -> (d0), (d0) -> (0, 0, 0), (d0) -> (d0)],
        iterator_types = ["parallel"], library_call = "rdu_hash_find"}
        ins(%t0, %t1 : ...) outs(%e : tensor<8xi64>) { ... addi ... }
%r = torch_c.from_builtin_tensor %t2 : tensor<8xi64> -> !torch.vtensor<[8],si64>
```

The payload (an `addi` of the operands, so that no pass finds the op trivial) is not the
op's meaning: the marker is a call of `rdu_hash_find(ids, index)`. `rdu-convert-linalg`
keeps it for `rdu-hash-lookup`, which replaces it whole, and refuses any other
`library_call` (never runs a marker as arithmetic). Constant int arguments (`hash_find`'s
`miss_row`) are written into the name: `library_call = "rdu_hash_find(128)"`. `count` lets
the frontend check that every carried op came out of torch-mlir as its marker.
"""

from __future__ import annotations

import re

#: Custom ops carried as library calls: torch op name -> library_call name.
CARRIED = {"rdu.hash_find": "rdu_hash_find"}

_OPERATOR = re.compile(
    r'^(?P<indent>\s*)(?P<res>%[\w#]+) = torch\.operator "torch\.(?P<name>rdu\.\w+?)(?:\.default)?"'
    r"\((?P<args>[^)]*)\) : \((?P<argtys>[^)]*)\) -> (?P<resty>!torch\.vtensor<\[[\d,]*\],\w+>)(?P<rest>.*)$",
    re.M,
)
_VT = r"!torch\.vtensor<\[([\d,]*)\],(\w+)>"
_ELT = {"si64": "i64", "si32": "i32", "f32": "f32", "f64": "f64", "i1": "i1", "bf16": "bf16", "f16": "f16"}


def _builtin(vtensor: str) -> tuple[str, list[int], str]:
    """(builtin tensor type, shape, element type) of a static `!torch.vtensor`."""
    m = re.fullmatch(_VT, vtensor.strip())
    if m is None or m.group(2) not in _ELT:
        raise ValueError(f"custom op operand type {vtensor!r} is not a static value tensor")
    shape = [int(d) for d in m.group(1).split(",") if d]
    elt = _ELT[m.group(2)]
    return f"tensor<{''.join(f'{d}x' for d in shape)}{elt}>", shape, elt


def _constant_int(text: str, name: str) -> int:
    m = re.search(r"^\s*" + re.escape(name) + r" = torch\.constant\.int (-?\d+)", text, re.M)
    if m is None:
        raise ValueError(f"custom op argument {name} must be a constant int of the model (a Python int), not a computed value")
    return int(m.group(1))


def carry(text: str) -> str:
    """`text` (torch dialect, as the FX importer prints it) with every op of `CARRIED` as a
    `library_call` marker. Text without them is returned as is."""
    counter = [0]

    def rewrite(m: re.Match[str]) -> str:
        call = CARRIED.get(m.group("name"))
        if call is None:
            return m.group(0)
        k = counter[0]
        counter[0] += 1
        ind, res, loc = m.group("indent"), m.group("res"), m.group("rest")
        args = [a.strip() for a in m.group("args").split(",") if a.strip()]
        argtys = re.findall(r"!torch\.vtensor<\[[\d,]*\],\w+>|!torch\.int", m.group("argtys"))
        ints = [_constant_int(text, a) for a, t in zip(args, argtys, strict=True) if t == "!torch.int"]
        args = [a for a, t in zip(args, argtys, strict=True) if t != "!torch.int"]
        vts = [t for t in argtys if t != "!torch.int"]
        ins = [_builtin(t) for t in vts]
        if ints:  # constant int arguments (hash_find's miss_row) go into the marker's name
            call = f"{call}({', '.join(str(v) for v in ints)})"
        out_t, out_shape, out_elt = _builtin(m.group("resty"))
        rank = len(out_shape)
        dims = ", ".join(f"d{i}" for i in range(rank))
        maps = []
        for _, shape, _ in ins:  # same-shape operands at the identity, others at element 0
            body = dims if shape == out_shape else ", ".join("0" for _ in shape)
            maps.append(f"affine_map<({dims}) -> ({body})>")
        maps.append(f"affine_map<({dims}) -> ({dims})>")
        lines = [f"{ind}%rduc{k}_{i} = torch_c.to_builtin_tensor {a} : {vt} -> {bt}"
                 for i, (a, vt, (bt, _, _)) in enumerate(zip(args, vts, ins, strict=True))]
        lines.append(f"{ind}%rduc{k}_e = tensor.empty() : {out_t}")
        operands = ", ".join(f"%rduc{k}_{i}" for i in range(len(args)))
        types = ", ".join(bt for bt, _, _ in ins)
        its = ", ".join('"parallel"' for _ in range(rank))
        blockargs = ", ".join(f"%rduc{k}_a{i}: {elt}" for i, (_, _, elt) in enumerate(ins))
        lines += [
            f'{ind}%rduc{k}_r = linalg.generic {{indexing_maps = [{", ".join(maps)}], iterator_types = [{its}], '
            f'library_call = "{call}"}} ins({operands} : {types}) outs(%rduc{k}_e : {out_t}) {{',
            f"{ind}^bb0({blockargs}, %rduc{k}_o: {out_elt}):",
            f"{ind}  %rduc{k}_x = arith.addi %rduc{k}_a0, %rduc{k}_a1 : {out_elt}",
            f"{ind}  linalg.yield %rduc{k}_x : {out_elt}",
            f"{ind}}} -> {out_t}{loc}",
            f"{ind}{res} = torch_c.from_builtin_tensor %rduc{k}_r : {out_t} -> {m.group('resty')}{loc}",
        ]
        return "\n".join(lines)

    return _OPERATOR.sub(rewrite, text)


def count(text: str, call: str) -> int:
    """How many `library_call` markers of `call` (with or without constant arguments,
    `rdu_hash_find(128)`) the (linalg) module `text` holds."""
    return len(re.findall(r'library_call = "' + re.escape(call) + r'(\([-\d, ]*\))?"', text))
