"""predictors/threads.py: the thread count, the parts a step is split into, and the pool."""
import threading

import pytest

from nncompress.predictors import threads


@pytest.mark.parametrize("n,k,min_part,align", [(100, 2, 10, 1), (100, 3, 10, 6), (245, 2, 48, 6),
                                                (95, 2, 48, 6), (7, 4, 1, 1), (0, 2, 1, 1),
                                                (13, 16, 1, 6)])
def test_parts_cover_the_range_in_order_and_respect_the_limits(n, k, min_part, align):
    p = threads.parts(n, k, min_part, align)
    assert [lo for lo, _ in p[1:]] == [hi for _, hi in p[:-1]]        # contiguous, in order
    assert (p[0][0], p[-1][1]) == (0, n) if n else p == []
    assert len(p) <= max(1, min(k, n // min_part))
    assert all(lo % align == 0 for lo, _ in p) and all(hi > lo for lo, hi in p)
    if len(p) > 1:
        assert min(hi - lo for lo, hi in p) >= min_part - align


def test_parts_split_evenly_when_there_is_room():
    assert threads.parts(240, 2, 48, 6) == [(0, 120), (120, 240)]
    assert threads.parts(95, 2, 48, 6) == [(0, 95)]
    assert threads.parts(100, 1, 1) == [(0, 100)]


def test_run_keeps_the_order_uses_other_threads_and_raises():
    names = threads.run(lambda i: (i, threading.current_thread().name), [(i,) for i in range(4)])
    assert [i for i, _ in names] == [0, 1, 2, 3]
    assert names[0][1] == threading.current_thread().name
    assert all(n.startswith("nnc-step") for _, n in names[1:])

    def boom(i):
        if i == 2:
            raise KeyError(i)
        return i
    with pytest.raises(KeyError):
        threads.run(boom, [(i,) for i in range(3)])


def test_count_follows_limit_then_the_environment(monkeypatch):
    monkeypatch.setattr(threads, "_LIMIT", None)
    monkeypatch.delenv(threads.ENV, raising=False)
    assert threads.count() == threads.usable_cores() >= 1
    monkeypatch.setenv(threads.ENV, "3")
    assert threads.count() == 3
    threads.limit(1)
    try:
        assert threads.count() == 1
    finally:
        threads.limit(None)
    assert threads.count() == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(threads.ENV, bad)
        with pytest.raises(ValueError, match=threads.ENV):
            threads.count()
    for bad in (0, -2, True, 1.5):
        with pytest.raises(ValueError):
            threads.limit(bad)
