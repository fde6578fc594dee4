"""Numbers as a person reads them: bytes with binary units, seconds with s/ms/us/ns.

`format_bytes` / `format_seconds` give two decimals (reports, tables); `compact_bytes` /
`compact_seconds` three significant digits in at most 8 characters (narrow table columns).
"""

from __future__ import annotations


def format_bytes(n: float) -> str:
    """Bytes with a binary unit and two decimals: 512 B, 4.25 KiB, 1.50 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


def format_seconds(s: float) -> str:
    """Seconds as s, ms (three decimals) or µs (two): 1.234 s, 88.500 ms, 4.12 µs."""
    if s >= 1:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3f} ms"
    return f"{s * 1e6:.2f} µs"


def compact_bytes(n: float) -> str:
    """Three significant digits and a binary unit: 702 KiB, 4.25 KiB, 9 MiB (<= 8 chars)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 999.5 or unit == "TiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} TiB"


def compact_seconds(s: float) -> str:
    """Three significant digits: 1.23 s, 88.5 ms, 412 µs, 3.1 ns (<= 8 chars)."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(s) >= scale * 0.9995:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"
