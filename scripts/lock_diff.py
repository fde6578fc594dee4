"""Print the packages whose pinned version differs between two requirements locks.

    python scripts/lock_diff.py OLD_LOCK NEW_LOCK
"""

from __future__ import annotations

import re
import sys


def pins(path: str) -> dict[str, str]:
    """`name==version` lines of a lock, by normalised package name."""
    out = {}
    for line in open(path):
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line)
        if m:
            out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return out


def main() -> None:
    old, new = pins(sys.argv[1]), pins(sys.argv[2])
    changed = 0
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name, "-"), new.get(name, "-")
        if a != b:
            print(f"  {name}: {a} -> {b}")
            changed += 1
    print(f"  ({changed} changed)" if changed else "  (none)")


if __name__ == "__main__":
    main()
