"""Traces: the fitted generators against the published Azure statistics, arrivals, CSV I/O."""

from __future__ import annotations

import numpy as np
import pytest

from rdu_compiler.errors import RduError
from rdu_compiler.serve.traces import (
    PUBLISHED,
    Request,
    TraceError,
    arrivals,
    generate,
    read_csv,
    write_csv,
)


@pytest.mark.parametrize("trace", sorted(PUBLISHED))
def test_lengths_match_published_statistics(trace: str) -> None:
    reqs = generate(trace, rate=1000.0, duration=20.0, seed=7)  # ~20,000 requests
    assert len(reqs) > 15_000
    for values, stats in (([r.num_prefill_tokens for r in reqs], PUBLISHED[trace][0]),
                          ([r.num_decode_tokens for r in reqs], PUBLISHED[trace][1])):
        a = np.array(values)
        p50, p90, p99 = np.percentile(a, [50, 90, 99])
        assert a.min() >= 1
        assert a.mean() == pytest.approx(stats.mean, rel=0.05)
        assert p50 == pytest.approx(stats.p50, rel=0.05)
        assert p90 == pytest.approx(stats.p90, rel=0.05)
        assert p99 == pytest.approx(stats.p99, rel=0.05)


@pytest.mark.parametrize("cv", [1.0, 3.0])
def test_arrivals_rate_and_cv(cv: float) -> None:
    t = arrivals(np.random.default_rng(0), rate=50.0, duration=400.0, cv=cv)
    gaps = np.diff(t)
    assert len(t) / 400.0 == pytest.approx(50.0, rel=0.1)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.1)
    assert np.all(gaps >= 0) and t.max() < 400.0


def test_same_seed_same_trace() -> None:
    assert generate("code", 3.0, 50.0, seed=4) == generate("code", 3.0, 50.0, seed=4)
    assert generate("code", 3.0, 50.0, seed=4) != generate("code", 3.0, 50.0, seed=5)


def test_csv_round_trip(tmp_path) -> None:
    reqs = generate("conversation", 5.0, 10.0, seed=1)
    path = tmp_path / "t.csv"
    write_csv(path, reqs)
    assert read_csv(path) == reqs
    assert path.read_text().splitlines()[0] == "arrived_at,num_prefill_tokens,num_decode_tokens"


def test_csv_extra_columns_and_order(tmp_path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("num_decode_tokens,arrived_at,x,num_prefill_tokens\n5,2.0,a,10\n3,1.0,b,7\n")
    assert read_csv(path) == [Request(1.0, 7, 3), Request(2.0, 10, 5)]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("arrived_at,num_prefill_tokens\n0,1\n", "line 1: the header lacks column(s) num_decode_tokens"),
        ("arrived_at,num_prefill_tokens,num_decode_tokens\n0,5,5\n1,5,x\n", "line 3, column num_decode_tokens: 'x'"),
        ("arrived_at,num_prefill_tokens,num_decode_tokens\n-1,5,5\n", "line 2, column arrived_at: '-1'"),
        ("arrived_at,num_prefill_tokens,num_decode_tokens\n0,0,5\n", "line 2, column num_prefill_tokens: '0'"),
        ("arrived_at,num_prefill_tokens,num_decode_tokens\n0,5\n", "line 2: 2 field(s)"),
        ("arrived_at,num_prefill_tokens,num_decode_tokens\n", "no requests"),
        ("", "empty file"),
    ],
)
def test_bad_csv_names_file_line_column(tmp_path, text: str, where: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TraceError) as err:
        read_csv(path)
    assert str(path) in str(err.value) and where in str(err.value)
    assert isinstance(err.value, RduError)


def test_missing_file_and_bad_parameters(tmp_path) -> None:
    with pytest.raises(TraceError, match="cannot read"):
        read_csv(tmp_path / "nope.csv")
    with pytest.raises(TraceError, match="unknown trace"):
        generate("chat", 1.0, 1.0)
    with pytest.raises(TraceError, match="rate must be a positive"):
        generate("code", 0.0, 1.0)
