"""The checkerboard index: how much of a logit map's spatial variation sits at the period-2 frequency.

For logits ``L`` of shape ``(K, n_1, ..., n_d)`` and one spatial axis ``a`` (cut to an even length ``n``),
take the discrete Fourier transform along ``a`` of every line of every class map and its power
``P[f] = |F[f]|²``, ``f = 0 .. n-1``. The share of axis ``a`` is

    S_a = Σ P[n/2] / Σ_{f ≠ 0} P[f]

summed over all classes and all lines along ``a``: the energy at the Nyquist frequency (the pattern
+ - + - of period two voxels, what transposed convolutions with kernel = stride = 2 tend to leave) over
all energy except the constant part of each line. ``S_a`` is 1 for a pure period-2 pattern, about
``1/(n-1)`` for white noise and near 0 for a smooth map. The index of a volume is the mean of ``S_a`` over the
axes the network works on; a comparison reports its mean over the held-out volumes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

MIN_LENGTH = 4  # shorter axes have no meaningful spectrum and are left out


def nyquist_share(logits: torch.Tensor, axis: int) -> float | None:
    """``S_a`` of logits ``(K, *spatial)`` along spatial ``axis``; None when the axis is shorter than 4 voxels.
    A map without variation along the axis has share 0."""
    dim = axis + 1
    n = logits.shape[dim] - logits.shape[dim] % 2
    if n < MIN_LENGTH:
        return None
    nyquist = total = 0.0
    for channel in logits:  # one class at a time keeps the spectrum's memory small on large volumes
        spectrum = torch.fft.rfft(channel.narrow(axis, 0, n).float(), dim=axis)
        power = spectrum.real.square() + spectrum.imag.square()
        at_nyquist = float(power.select(axis, n // 2).sum(dtype=torch.float64))
        # rfft keeps f = 0..n/2; f = 1..n/2-1 stand for themselves and their mirror n-f, so they count twice
        nyquist += at_nyquist
        total += 2.0 * float(power.narrow(axis, 1, n // 2 - 1).sum(dtype=torch.float64)) + at_nyquist
    return nyquist / total if total > 0 else 0.0


def checkerboard_index(logits: torch.Tensor, axes: Sequence[int]) -> float:
    """The mean of :func:`nyquist_share` over ``axes`` (spatial axes of ``logits``, which is ``(K, *spatial)``);
    NaN when every axis is too short."""
    shares = [s for s in (nyquist_share(logits, a) for a in axes) if s is not None]
    return sum(shares) / len(shares) if shares else float("nan")
