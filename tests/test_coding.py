import numpy as np
import pytest

from nncompress.format import coding


def _rand_weights(rng, n, scale=1000):
    return rng.integers(0, scale, (n, 256)) ** 3


def test_quantize_rows_sum_exactly_and_floor_at_one():
    rng = np.random.default_rng(1)
    w = _rand_weights(rng, 500)
    w[0] = 0                      # all-zero row -> uniform
    w[1] = 0
    w[1, 7] = (1 << 38) - 1       # one huge weight
    f = coding.quantize(w)
    assert f.dtype == np.int64
    assert (f.sum(axis=1) == coding.TOTAL).all()
    assert f.min() >= 1
    assert (f[0] == coding.TOTAL // 256).all()
    assert f[1, 7] == coding.TOTAL - 255


def test_quantize_is_monotone_in_weight():
    rng = np.random.default_rng(2)
    w = _rand_weights(rng, 50)
    f = coding.quantize(w)
    for row_w, row_f in zip(w, f):
        order = np.argsort(row_w, kind="stable")
        # frequencies never decrease as weights increase, apart from the remainder on the argmax
        assert (np.diff(row_f[order][:-1]) >= 0).all()


@pytest.mark.parametrize("bad", [np.ones((3, 255)), -np.ones((2, 256)), np.full((1, 256), 1 << 31)])
def test_quantize_rejects_bad_weights(bad):
    with pytest.raises(ValueError):
        coding.quantize(bad.astype(np.int64))


def test_round_trip_and_code_length_matches_integer_tables():
    """constriction must code with exactly our integer tables: the size is within a few words of
    -sum log2(F/2^24), including symbols of frequency 1 (24 bits each)."""
    rng = np.random.default_rng(3)
    n = 20000
    f = coding.quantize(_rand_weights(rng, n))
    sym = rng.integers(0, 256, n)  # mostly improbable symbols: stresses the small frequencies
    enc = coding.SegmentEncoder()
    enc.encode(sym[:7000], f[:7000])
    enc.encode(sym[7000:], f[7000:])
    words = enc.finish()
    ideal = coding.code_length_bits(f, sym)
    assert ideal <= 32 * len(words) <= ideal + 96
    dec = coding.SegmentDecoder(words)
    out = np.concatenate([dec.decode(f[:1]), dec.decode(f[1:])])
    assert (out == sym).all()


def test_decoding_with_other_tables_gives_other_symbols():
    rng = np.random.default_rng(4)
    f = coding.quantize(_rand_weights(rng, 2000))
    sym = rng.integers(0, 256, 2000)
    enc = coding.SegmentEncoder()
    enc.encode(sym, f)
    g = f.copy()
    g[:, [0, 1]] = g[:, [1, 0]]
    out = coding.SegmentDecoder(enc.finish()).decode(g)
    assert not (out == sym).all()
