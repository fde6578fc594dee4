"""A canonical safetensors header: the same weights always give the same bytes.

safetensors (0.8) keeps ``__metadata__`` in a Rust ``HashMap`` and writes it in that map's
per-process random order (upstream issue safetensors#584), so sorting the Python dict does
not help. `canonicalize_header` rewrites the header of a written file with the metadata
keys sorted; tensor entries keep safetensors' own (deterministic) order and the tensor
data is not touched.
"""

from __future__ import annotations

import json
import os


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
