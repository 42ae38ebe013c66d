"""KL-divergence threshold selection (Bhandare et al. 2019, after the TensorRT / MXNet calibrator).

Pure numpy, no TensorFlow. A tensor's activations are summarised by a signed histogram over ``[-R, R]``
(``2 * bins`` equal bins, ``R`` = the largest magnitude seen). For each candidate threshold ``T`` the
histogram clipped at ``T`` (outliers folded into the last bin) is compared with its coarsened copy on the
available integer levels; the ``T`` with the smallest KL divergence wins. Three modes, as in the paper:

- symmetric:   one threshold on |x| for both sides;
- independent: a threshold for the negative side and one for the positive side, each chosen on its own;
- conjugate:   both sides chosen independently, then the larger magnitude used for both.

The resulting range is always intersected with the observed [min, max]: a tensor that is never negative
(ReLU output) keeps min 0, which is what INC's asymmetric uint8 activation quantization can use.

Exact zeros are left out of the search. Zero is exactly representable on the quantized grid whatever the
threshold, so the zeros carry no quantization error; left in (a ReLU output is about half zeros), their
spike in the first bin is smeared over its merged neighbours by the coarsening step, which the KL search
then punishes for every wide range, and it ends at the narrowest candidate (255 of 2048 bins: 12% of the
range, found on the reference model's FFN-2 inputs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["KL_MODES", "TensorStats", "kl_range", "kl_threshold"]

KL_MODES = ("symmetric", "independent", "conjugate")


@dataclass(frozen=True)
class TensorStats:
    """Calibration statistics of one tensor: observed range and signed histogram over [-absmax, absmax]."""

    minimum: float
    maximum: float
    hist: np.ndarray  # int64 counts, 2 * bins, bin j covers [-R + j*w, -R + (j+1)*w), w = R / bins
    zeros: int = 0  # how many of the values counted were exactly 0 (they sit in the first positive bin)

    @property
    def absmax(self) -> float:
        return max(abs(self.minimum), abs(self.maximum))

    @property
    def bins(self) -> int:
        return len(self.hist) // 2

    def sides(self) -> tuple[np.ndarray, np.ndarray]:
        """(negative side by increasing |x|, positive side by increasing x), each ``bins`` long."""
        b = self.bins
        neg, pos = self.hist[:b][::-1].astype(np.float64), self.hist[b:].astype(np.float64)
        if self.zeros:
            pos[0] = max(pos[0] - self.zeros, 0.0)  # exact zeros: representable, left out of the search
        return neg, pos


def _smooth(p: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Give zero bins a little mass taken from the non-zero ones (so KL stays finite)."""
    zero = p == 0
    n_zero = int(zero.sum())
    n_nonzero = p.size - n_zero
    if n_nonzero == 0:
        return p
    take = eps * n_zero / n_nonzero
    out = p.astype(np.float64).copy()
    out[zero] = eps
    out[~zero] -= take
    return out


def kl_threshold(hist: np.ndarray, bin_width: float, levels: int = 128) -> float:
    """The clipping threshold for a one-sided histogram (|x| increasing) that minimises KL(P || Q).

    ``hist[k]`` counts values in ``[k*w, (k+1)*w)``. ``levels`` is the number of integer levels available to
    that side. Returns ``i * bin_width`` for the best number of kept bins ``i`` (``levels <= i <= len(hist)``);
    with fewer bins than levels, or no mass at all, the full range is kept.
    """
    hist = np.asarray(hist, dtype=np.float64)
    n = hist.size
    total = hist.sum()
    if total == 0:
        return 0.0
    last = int(np.flatnonzero(hist)[-1]) + 1  # bins past the last non-zero one never help
    if n <= levels or last <= levels:
        return float(max(last, 1) * bin_width) if n > levels else float(n * bin_width)
    tail = np.cumsum(hist[::-1])[::-1]  # tail[i] = sum(hist[i:])
    best_i, best_kl = last, np.inf
    for i in range(levels, last + 1):
        sliced = hist[:i]
        p = sliced.copy()
        if i < n:
            p[-1] += tail[i]
        nonzero = sliced != 0
        chunk = (np.arange(i) * levels) // i
        sums = np.bincount(chunk, weights=sliced, minlength=levels)
        counts = np.bincount(chunk, weights=nonzero.astype(np.float64), minlength=levels)
        q = np.where(nonzero, sums[chunk] / np.maximum(counts[chunk], 1.0), 0.0)
        p_sum, q_sum = p.sum(), q.sum()
        if q_sum == 0:
            continue
        p = _smooth(p / p_sum)
        q = _smooth(q / q_sum)
        mask = p > 0
        kl = float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return float(best_i * bin_width)


def kl_range(stats: TensorStats, mode: str = "symmetric") -> tuple[float, float]:
    """(min, max) activation range for ``stats`` under a KL mode, within the observed [min, max]."""
    if mode not in KL_MODES:
        raise ValueError(f"unknown KL mode {mode!r} (expected one of {', '.join(KL_MODES)})")
    lo, hi = float(stats.minimum), float(stats.maximum)
    if stats.absmax == 0 or stats.hist.sum() == 0:
        return lo, hi
    width = stats.absmax / stats.bins
    neg, pos = stats.sides()
    has_neg, has_pos = neg.sum() > 0 and lo < 0, pos.sum() > 0 and hi > 0
    if mode == "symmetric":
        levels = 128 if (has_neg and has_pos) else 255
        t = kl_threshold(neg + pos, width, levels)
        t_neg = t_pos = t
    else:
        levels = 128 if (has_neg and has_pos) else 255
        t_neg = kl_threshold(neg, width, levels) if has_neg else 0.0
        t_pos = kl_threshold(pos, width, levels) if has_pos else 0.0
        if mode == "conjugate":
            t_neg = t_pos = max(t_neg, t_pos)
    new_lo = max(lo, -t_neg) if lo < 0 else lo
    new_hi = min(hi, t_pos) if hi > 0 else hi
    if new_hi <= new_lo:  # degenerate (a spike at one value): keep the observed range
        return lo, hi
    return float(new_lo), float(new_hi)
