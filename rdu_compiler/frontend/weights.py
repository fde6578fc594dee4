"""Weights files: an imported program's weights as safetensors, tied weights stored once.

:func:`save_weights` writes, :func:`load_weights` reads back as numpy. The header is
canonical (:func:`canonicalize_header`), so the same weights always give the same bytes:
safetensors (0.8) keeps ``__metadata__`` in a Rust ``HashMap`` and writes it in that map's
per-process random order (upstream issue safetensors#584), so sorting the Python dict does
not help. `canonicalize_header` rewrites the header of a written file with the metadata
keys sorted; tensor entries keep safetensors' own (deterministic) order and the tensor
data is not touched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rdu_compiler.frontend.errors import FrontendError

if TYPE_CHECKING:
    import torch

    from rdu_compiler.frontend.program import ImportedProgram

__all__ = ["canonicalize_header", "load_weights", "save_weights"]


def canonicalize_header(path: str | os.PathLike[str]) -> None:
    """Rewrite the JSON header of the safetensors file `path` with sorted metadata keys.

    The header keeps its length (padded with spaces, as safetensors pads it) whenever the
    sorted text fits, so only the header bytes are rewritten; otherwise the file is
    rewritten whole.

    Raises:
        OSError: the file cannot be read or written.
        ValueError: `path` is not a safetensors file.
    """
    with open(path, "r+b") as f:
        size = int.from_bytes(f.read(8), "little")
        raw = f.read(size)
        if len(raw) != size:
            raise ValueError(f"'{path}' is not a safetensors file (truncated header)")
        header = json.loads(raw)
        meta = header.pop("__metadata__", None)
        ordered = ({"__metadata__": dict(sorted(meta.items()))} if meta is not None else {}) | header
        text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) <= size:
            f.seek(8)
            f.write(text + b" " * (size - len(text)))
            return
        f.seek(8 + size)
        data = f.read()
        text += b" " * (-len(text) % 8)
        f.seek(0)
        f.write(len(text).to_bytes(8, "little") + text + data)
        f.truncate()


#: Metadata key, in a weights safetensors file, of the JSON alias map {arg name: stored name}.
ALIAS_METADATA_KEY = "rdu_aliases"


#: Metadata key of the JSON map {arg name: kind} ("parameter" | "buffer" | "constant").
KINDS_METADATA_KEY = "rdu_arg_kinds"


#: Metadata key of the weights-file format tag.
FORMAT_METADATA_KEY = "rdu_format"


WEIGHTS_FORMAT = "rdu_compiler.weights.v1"


def _storage_key(t: torch.Tensor) -> tuple[Any, ...]:
    """Identity of a tensor's exact memory view (same key <=> same data, shape and dtype)."""
    return (
        t.untyped_storage().data_ptr(),
        t.storage_offset(),
        tuple(t.shape),
        tuple(t.stride()),
        t.dtype,
        t.device.type,
    )


def save_weights(path: str | os.PathLike[str], prog: ImportedProgram) -> None:
    """Write ``prog.weights`` to a safetensors file, storing shared tensors once.

    Arguments whose tensors are the same memory view (tied weights, e.g. GPT-2's ``wte``
    and ``lm_head``) are stored once, under the first argument name in ``prog.arg_names``
    order; the others are recorded in the metadata entry ``rdu_aliases`` (JSON
    ``{alias arg name: stored arg name}``). ``rdu_arg_kinds`` records each weight's kind.
    Tensors that overlap in memory without being identical views are stored as copies.

    Raises:
        FrontendError: the file cannot be written.
    """
    import torch
    from safetensors.torch import save_file

    kinds = dict(zip(prog.arg_names, prog.arg_kinds, strict=True))
    order = [n for n in prog.arg_names if n in prog.weights]
    order += [n for n in prog.weights if n not in kinds]  # defensive: weights not in args
    stored: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    by_key: dict[tuple[Any, ...], str] = {}
    storages: set[int] = set()
    for name in order:
        t = prog.weights[name].detach().cpu()
        key = _storage_key(t)
        if key in by_key:
            aliases[name] = by_key[key]
            continue
        by_key[key] = name
        ptr = t.untyped_storage().data_ptr()
        if (
            ptr in storages
            or not t.is_contiguous()
            or t.numel() * t.element_size() != t.untyped_storage().nbytes()
        ):
            t = t.clone(memory_format=torch.contiguous_format)  # partial views: own copy
        storages.add(ptr)
        stored[name] = t
    metadata = {
        FORMAT_METADATA_KEY: WEIGHTS_FORMAT,
        ALIAS_METADATA_KEY: json.dumps(aliases, sort_keys=True),
        KINDS_METADATA_KEY: json.dumps({n: kinds.get(n, "parameter") for n in order}),
    }
    try:
        save_file(stored, os.fspath(path), metadata=metadata)
        canonicalize_header(path)  # safetensors writes metadata in random order
    except OSError as e:
        raise FrontendError(f"Cannot write weights file '{path}': {e.strerror or e}.") from None


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    """CPU tensor -> numpy array; bfloat16 becomes ``ml_dtypes.bfloat16``."""
    import torch

    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.contiguous().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def load_weights(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a weights file written by :func:`save_weights`: arg name -> numpy array.

    Aliases are resolved: every tied argument name maps to the (same) array of the stored
    tensor. Arrays keep the stored dtype and shape (bfloat16 as ``ml_dtypes.bfloat16``).

    Raises:
        FrontendError: the file is missing or is not a readable safetensors file, or an
            alias points at a tensor that is not in the file.
    """
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    if not p.is_file():
        raise FrontendError(f"Weights file '{p}' does not exist.")
    out: dict[str, np.ndarray] = {}
    try:
        with safe_open(os.fspath(p), framework="pt") as f:
            metadata = f.metadata() or {}
            for name in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                out[name] = _to_numpy(f.get_tensor(name))
    except (SafetensorError, OSError) as e:
        raise FrontendError(
            f"Weights file '{p}' is not a readable safetensors file: {e}."
        ) from None
    try:
        aliases = json.loads(metadata.get(ALIAS_METADATA_KEY, "{}"))
    except json.JSONDecodeError:
        raise FrontendError(f"Weights file '{p}' has a malformed alias map.") from None
    for alias, target in aliases.items():
        if target not in out:
            raise FrontendError(
                f"Weights file '{p}' maps '{alias}' to '{target}', which is not in the file."
            )
        out[alias] = out[target]
    return out
