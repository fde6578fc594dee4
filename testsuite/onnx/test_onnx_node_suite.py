"""ONNX backend node tests on the emulator: a fixed sample must end in the class that
testsuite/onnx/expected.json records (pass when not listed), in either direction.

The sample (`onnx_conformance.sample`) is the first two cases by name of every op type of
the suite (387 cases), so every op type is covered; the full sweep over all 1,884 cases is
`python scripts/refresh_onnx_expected.py`, which rewrites expected.json. A case that now
passes but is listed, or fails differently, fails this test: refresh the JSON (and say
why in the commit) or fix the regression.

Pins onnx 1.23.2 (its node tests and reference outputs) and ml_dtypes 0.6.0 (the narrow
types' casts), both from requirements.lock.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

pytest.importorskip("onnx")

import onnx_conformance as oc  # noqa: E402

#: Cases per op type in the CI sample (the full sweep is scripts/refresh_onnx_expected.py).
PER_OP = int(os.environ.get("RDU_ONNX_SAMPLE_PER_OP", "2"))


@pytest.fixture(scope="module")
def cases() -> dict:
    return oc.load_cases()


@pytest.fixture(scope="module")
def expected() -> dict:
    return oc.load_expected()


def test_expected_json_is_consistent(cases: dict, expected: dict) -> None:
    listed = expected["cases"]
    assert set(listed) <= set(cases), f"unknown cases listed: {sorted(set(listed) - set(cases))[:5]}"
    assert all(v["class"] in oc.CLASSES and v["class"] != "pass" for v in listed.values())
    counts = Counter(v["class"] for v in listed.values())
    counts["pass"] = len(cases) - len(listed)
    assert {c: counts.get(c, 0) for c in oc.CLASSES} == expected["counts"]
    assert expected["total"] == len(cases)


def test_sample_covers_every_op_type(cases: dict) -> None:
    names = oc.sample(cases, PER_OP)
    covered = set().union(*(oc.op_types(cases[n]) for n in names))
    assert covered == set().union(*(oc.op_types(c) for c in cases.values()))
    assert len(names) >= 150


def test_sample_matches_expected(cases: dict, expected: dict) -> None:
    names = oc.sample(cases, PER_OP)
    workers = max(1, min(2, os.cpu_count() or 1))
    results = oc.run_cases(names, workers=workers)
    changed = []
    for name in names:
        got = results[name]
        want = oc.expected_class(expected, name)
        if got.cls != want:
            changed.append(f"{name}: expected {want}, got {got.cls} {got.detail[:200]}")
    assert not changed, (
        f"{len(changed)} of {len(names)} sampled cases changed class (refresh with "
        "scripts/refresh_onnx_expected.py if intended):\n" + "\n".join(changed)
    )
