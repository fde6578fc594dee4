"""Fixed parts of every generated kernels.py: helpers (torch + triton + stdlib only)."""

from __future__ import annotations

from rdu_compiler.runtime.triton.settings import ENV_PREAMBLE

HELPERS = '''_NATIVE_LOW_PRECISION_DOT = tl.constexpr(not _INTERPRET)


class RuntimeCheckFailed(RuntimeError):
    """A runtime check of the program failed for these inputs (an integer division by
    zero, a gather index out of bounds, ...); `op` names the payload op."""

    def __init__(self, op, message):
        super().__init__(message)
        self.op = op


def _raise_failed_checks(flags):
    """`flags`: (int32 flag tensor, [(payload op, message)]) per launch with checks, in
    launch order; raises RuntimeCheckFailed for the first flag a kernel set."""
    for t, checks in flags:
        for hit, (op, message) in zip(t.tolist(), checks):
            if hit:
                raise RuntimeCheckFailed(op, message)


def _configs(*configs):
    """The autotune space: all configs on a GPU, the first (from the rdu tiling) otherwise."""
    return list(configs) if _AUTOTUNE else [configs[0]]


@triton.jit
def _add_combine(a, b):
    return a + b


@triton.jit
def _mul_combine(a, b):
    return a * b


@triton.jit
def _max_combine(a, b):
    return tl.maximum(a, b)


@triton.jit
def _min_combine(a, b):
    return tl.minimum(a, b)


@triton.jit
def _maxnan_combine(a, b):
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _minnan_combine(a, b):
    return tl.minimum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _or_combine(a, b):
    return a | b


@triton.jit
def _and_combine(a, b):
    return a & b


@triton.jit
def _xor_combine(a, b):
    return a ^ b


def _std(name, fallback):
    # Triton's own function when it is usable here: the interpreter recognises it (numpy fast
    # path) in either mode; compiled code needs it compiled (not defined under the interpreter)
    fn = getattr(tl.standard, name, None)
    if fn is None or (not _INTERPRET and type(fn) is not type(fallback)):
        return fallback
    return fn


# the combine functions of tl.sum / tl.max / tl.min / tl.cumprod (numpy fast paths in the
# interpreter; exactly what those functions reduce with on a GPU)
_sum_fn = _std("_sum_combine", _add_combine)
_max_fn = _std("_elementwise_max", _max_combine)
_min_fn = _std("_elementwise_min", _min_combine)
_prod_fn = _std("_prod_combine", _mul_combine)


@triton.jit
def _tanh(x):
    # odd Taylor series near 0 (no cancellation), (1 - e^-2|x|) / (1 + e^-2|x|) elsewhere
    ax = tl.abs(x)
    x2 = x * x
    small = ax * (1.0 + x2 * (-0.3333333333333333 + x2 * (0.13333333333333333 + x2 * (-0.05396825396825397 + x2 * 0.021869488536155203))))
    e = tl.exp(-2.0 * ax)
    t = tl.where(ax < 0.1, small, (1.0 - e) / (1.0 + e))
    return tl.where(x < 0, -t, t)


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _expm1(x):
    small = x * (1.0 + x * (0.5 + x * (0.16666666666666666 + x * (0.041666666666666664 + x * 0.008333333333333333))))
    return tl.where(tl.abs(x) < 0.1, small, tl.exp(x) - 1.0)


@triton.jit
def _log1p(x):
    small = x * (1.0 + x * (-0.5 + x * (0.3333333333333333 + x * (-0.25 + x * (0.2 + x * (-0.16666666666666666 + x * 0.14285714285714285))))))
    return tl.where(tl.abs(x) < 0.1, small, tl.log(1.0 + x))


@triton.jit
def _sinh(x):
    x2 = x * x
    small = x * (1.0 + x2 * (0.16666666666666666 + x2 * 0.008333333333333333))
    return tl.where(tl.abs(x) < 0.1, small, (tl.exp(x) - tl.exp(-x)) * 0.5)


@triton.jit
def _cosh(x):
    return (tl.exp(x) + tl.exp(-x)) * 0.5


@triton.jit
def _trunc(x):
    return tl.where(x < 0, tl.ceil(x), tl.floor(x))


@triton.jit
def _roundeven(x):
    f = tl.floor(x)
    d = x - f
    parity = f - 2.0 * tl.floor(f * 0.5)
    return tl.where(d > 0.5, f + 1.0, tl.where(d < 0.5, f, f + parity))


@triton.jit
def _round(x):
    t = _trunc(x)  # ties away from zero; x - t is exact (x + 0.5 would round first)
    return tl.where(tl.abs(x - t) >= 0.5, t + tl.where(x < 0, -1.0, 1.0), t)


@triton.jit
def _powf(a, b):
    # C powf: exp2(b * log2|a|), the sign for odd integer b, NaN for a < 0 and fractional b
    r = tl.exp2(b * tl.log2(tl.abs(a)))
    b_int = tl.floor(b) == b
    odd = b_int & ((tl.abs(b) % 2.0) == 1.0)
    r = tl.where((a < 0) & odd, -r, r)
    r = tl.where((a < 0) & (~b_int), float("nan"), r)
    return tl.where((b == 0) | (a == 1), 1.0, r)


@triton.jit
def _copysign(a, b):
    neg = (b < 0) | ((b == 0) & (1.0 / b < 0))
    return tl.where(neg, -tl.abs(a), tl.abs(a))


@triton.jit
def _floordiv(a, b):
    q = a // b
    return tl.where(((a % b) != 0) & ((a < 0) != (b < 0)), q - 1, q)


@triton.jit
def _ceildiv(a, b):
    q = a // b
    return tl.where(((a % b) != 0) & ((a < 0) == (b < 0)), q + 1, q)


_ST_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


def load_weights(path, device=None):
    """Read weights.safetensors (written by rdu-compile) into {argument name: tensor}.

    A minimal safetensors reader (the format is a JSON header and raw little-endian data),
    so this file needs only torch and triton. Tied weights (metadata `rdu_aliases`) map to
    the same tensor.
    """
    import json
    import struct

    device = device or ("cuda" if torch.cuda.is_available() and not _INTERPRET else "cpu")
    with open(path, "rb") as f:
        data = bytearray(f.read())
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + size
    out = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        dtype = _ST_DTYPES[entry["dtype"]]
        itemsize = torch.empty((), dtype=dtype).element_size()
        count = (end - begin) // itemsize
        flat = torch.frombuffer(data, dtype=dtype, count=count, offset=base + begin) if count else torch.empty(0, dtype=dtype)
        out[name] = flat.reshape(entry["shape"]).to(device)
    for alias, stored in json.loads(meta.get("rdu_aliases", "{}")).items():
        out[alias] = out[stored]
    return out


def _arg(t, name, shape, dtype, device):
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t)
    if tuple(t.shape) != shape:
        raise ValueError(f"{name}: shape {tuple(t.shape)}, the program expects {shape}")
    if t.dtype != dtype:
        raise ValueError(f"{name}: dtype {t.dtype}, the program expects {dtype}")
    return t.to(device).contiguous()
'''


def header(doc: str) -> str:
    """Module docstring, the interpreter switch (before `import triton`) and helpers."""
    return f'"""{doc}"""\n\n' + ENV_PREAMBLE + HELPERS
