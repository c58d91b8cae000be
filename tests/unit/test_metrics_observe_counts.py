"""Observing counted values equals observing each value that many times (buckets and count
exactly, the sum up to float rounding), also where the values fall on bucket bounds."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Histogram

from ofcommon.metrics import observe_counts

BUCKETS = (0.001, 0.01, 0.1, 1.0)


def samples(hist: Histogram) -> dict[tuple[str, str], float]:
    out = {}
    for metric in hist.collect():
        for s in metric.samples:
            out[(s.name, s.labels.get("le", ""))] = s.value
    return out


def test_counted_observations_match_one_by_one() -> None:
    counts = {0.0: 3, 0.001: 2, 0.0105: 7, 0.1: 1, 0.5: 4, 2.0: 5, 37.0: 1}
    one = Histogram("one", "x", ["service"], buckets=BUCKETS, registry=CollectorRegistry())
    many = Histogram("many", "x", ["service"], buckets=BUCKETS, registry=CollectorRegistry())
    for value, n in counts.items():
        for _ in range(n):
            one.labels("s").observe(value)
    observe_counts(many.labels("s"), counts)
    a = {
        (k[0].replace("one", ""), k[1]): v for k, v in samples(one).items() if "created" not in k[0]
    }
    b = {
        (k[0].replace("many", ""), k[1]): v
        for k, v in samples(many).items()
        if "created" not in k[0]
    }
    assert a.keys() == b.keys()
    for key, value in a.items():
        if key[0] == "_sum":
            assert math.isclose(b[key], value, rel_tol=1e-12)
        else:
            assert b[key] == value, key
    # buckets counted by hand: cumulative counts at each bound
    assert b[("_bucket", "0.001")] == 5
    assert b[("_bucket", "0.01")] == 5
    assert b[("_bucket", "0.1")] == 13
    assert b[("_bucket", "1.0")] == 17
    assert b[("_bucket", "+Inf")] == b[("_count", "")] == 23
