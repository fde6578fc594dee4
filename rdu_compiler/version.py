"""The compiler's identity for caches and job keys: its package version and a hash of its
source files, so a changed compiler never reuses a result computed by an older one."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


@lru_cache(maxsize=8)
def compiler_id(exclude: tuple[str, ...] = ()) -> str:
    """`<version>+<sha256 prefix>` of every `.py` and `.toml` under the package, leaving
    out files whose package-relative path starts with one of `exclude` (e.g. "serve/")."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")) + sorted(root.rglob("*.toml")):
        rel = f.relative_to(root).as_posix()
        if not (exclude and rel.startswith(exclude)):
            h.update(rel.encode())
            h.update(f.read_bytes())
    try:
        v = version("rdu-compiler")
    except PackageNotFoundError:
        v = "unknown"
    return f"{v}+{h.hexdigest()[:12]}"
