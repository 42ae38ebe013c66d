"""KL threshold selection on synthetic activations."""

from __future__ import annotations

import numpy as np
import pytest

from inc_transformer_mt.quant.kl import KL_MODES, TensorStats, kl_range, kl_threshold

pytestmark = pytest.mark.unit


def stats_of(x: np.ndarray, bins: int = 2048) -> TensorStats:
    r = float(np.abs(x).max())
    hist, _ = np.histogram(x, bins=2 * bins, range=(-r, r))
    return TensorStats(float(x.min()), float(x.max()), hist.astype(np.int64))


@pytest.fixture(scope="module")
def gaussian_with_outliers():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(0.0, 1.0, 200_000), [40.0, -35.0, 38.0]])


@pytest.mark.parametrize("mode", KL_MODES)
def test_kl_clips_the_outliers_that_minmax_keeps(gaussian_with_outliers, mode):
    x = gaussian_with_outliers
    lo, hi = kl_range(stats_of(x), mode)
    assert (x.min(), x.max()) == (-35.0, 40.0)  # what min/max calibration freezes
    # the KL range keeps the bulk of the Gaussian (|x| < 3 sigma) and drops the outliers
    assert 3.0 < hi < 8.0 and -8.0 < lo < -3.0
    kept = np.mean((x >= lo) & (x <= hi))
    assert kept > 0.999


def test_modes_differ_as_defined():
    rng = np.random.default_rng(1)
    # skewed: the negative side is narrow, the positive side wide
    x = np.concatenate([-np.abs(rng.normal(0, 0.5, 100_000)), np.abs(rng.normal(0, 3.0, 100_000)), [60.0]])
    s = stats_of(x)
    sym = kl_range(s, "symmetric")
    ind = kl_range(s, "independent")
    con = kl_range(s, "conjugate")
    assert sym[0] == -sym[1] or sym[0] == pytest.approx(x.min())  # one threshold on |x| (min stays observed)
    assert -ind[0] < ind[1]  # independent: its own, smaller threshold on the narrow negative side
    assert con[1] == pytest.approx(max(-ind[0], ind[1]))  # conjugate: the larger of the two, both sides
    assert con[0] == pytest.approx(max(-con[1], x.min()))


def test_non_negative_tensor_keeps_min_zero():
    rng = np.random.default_rng(2)
    x = np.maximum(rng.normal(0, 1, 100_000), 0.0)
    x[:3] = 30.0
    lo, hi = kl_range(stats_of(x), "symmetric")
    assert lo == 0.0 and 2.0 < hi < 10.0


def test_threshold_is_full_range_without_outliers():
    hist = np.ones(100, dtype=np.int64)  # fewer bins than levels: nothing to clip
    assert kl_threshold(hist, 0.1, levels=128) == pytest.approx(10.0)
    assert kl_threshold(np.zeros(300), 0.1) == 0.0


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="unknown KL mode"):
        kl_range(stats_of(np.array([-1.0, 1.0])), "asymmetric")


def test_exact_zeros_do_not_collapse_the_relu_threshold():
    """A ReLU output is half exact zeros; counted in the search they drive KL to its narrowest candidate."""
    rng = np.random.default_rng(3)
    x = np.maximum(rng.normal(0, 1, 200_000), 0.0)
    x[:2] = 12.0
    s = stats_of(x)
    with_zeros = TensorStats(s.minimum, s.maximum, s.hist, zeros=0)
    without = TensorStats(s.minimum, s.maximum, s.hist, zeros=int(np.sum(x == 0)))
    narrow = kl_range(with_zeros)[1]
    assert narrow == pytest.approx(255 * s.absmax / s.bins)  # the smallest candidate: 255 of 2048 bins
    lo, hi = kl_range(without)
    assert lo == 0.0 and hi > 2 * narrow and 3.0 < hi < 12.0  # ~3.7 sigma instead of ~1.5
