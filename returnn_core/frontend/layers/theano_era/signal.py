"""Theano-era layers for raw time signal frames (NetworkHiddenLayer's feature extraction): preemphasis_layer,
energy_normalization_layer, dft_layer_abs, mfcc_layer.

Each frame is a segment of the signal (e.g. from ``window``); the matrices are fixed NumPy constants, so the layers
have no parameters.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._output import LayerOutput

#: floor under the sqrt and log of a frame's energies: padding frames are all zero (their output is masked)
_FLOOR = np.float32(1e-20)


def _frames(layer: Layer, sources: list[LayerOutput], dim: int | None = None) -> tuple[LayerOutput, Any]:
    """The dense (B, T, D) source and its frame mask (B, T, 1); ``dim``: the feature dim it must have."""
    src = layer.single_source(sources)
    if src.sparse or not src.has_time or src.feature_ndim != 1:
        raise layer.error("needs a dense (batch, time, feature) input of signal frames")
    if dim is not None and layer.feature_dim(src) != dim:
        raise layer.error(f"needs input frames of dim {dim}, got {layer.feature_dim(src)}")
    return src, src.ops.expand_dims(src.mask(), -1)


def _int_opt(layer: Layer, key: str, default: int) -> int:
    value = layer.opts.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise layer.error(f"{key} must be a positive integer, got {value!r}")
    return value


class PreemphasisLayer(Layer):
    """``preemphasis_layer``: ``y[i] = x[i] - alpha * x[i - 1]`` along each frame (``alpha``, default 1.0); the
    frame's first sample has no predecessor and stays as it is, as the manual notes."""

    options = frozenset({"alpha"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Subtract the scaled previous sample."""
        ops = ctx.ops
        src, _ = _frames(self, sources)
        x = src.tensor
        alpha = np.float32(self.float_opt("alpha", 1.0))
        previous = ops.pad(x, [(0, 0), (0, 0), (1, 0)])[..., :-1]
        return src.with_tensor(x - alpha * previous, dim=src.dim)


class EnergyNormalizationLayer(Layer):
    """``energy_normalization_layer``: each frame (a chunk of the signal) divided by the square root of its energy,
    so it has unit energy. RETURNN's ``T.dot(x.T, x)`` on the 3-D (time, batch, feature) tensor mixes frames and seqs
    (or fails); the manual's intent, per chunk, is implemented."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Normalise each frame's energy."""
        ops = ctx.ops
        src, mask = _frames(self, sources)
        x = src.tensor * mask
        energy = ops.reduce(ops.square(x), "sum", -1, keepdims=True)
        return src.with_tensor(x * ops.rsqrt(ops.maximum(energy, _FLOOR)) * mask, dim=src.dim)


def _periodic_window(layer: Layer, name: str, length: int) -> np.ndarray:
    """The DFT-even window ``name`` of ``length`` samples (scipy's ``get_window`` default, ``fftbins=True``)."""
    n = np.arange(length) * (2.0 * np.pi / length)
    windows = {
        "hamming": lambda: 0.54 - 0.46 * np.cos(n),
        "hann": lambda: 0.5 - 0.5 * np.cos(n),
        "hanning": lambda: 0.5 - 0.5 * np.cos(n),
        "blackman": lambda: 0.42 - 0.5 * np.cos(n) + 0.08 * np.cos(2 * n),
        "boxcar": lambda: np.ones(length),
        "rectangular": lambda: np.ones(length),
        "bartlett": lambda: 1.0 - np.abs(np.arange(length) - length / 2.0) / (length / 2.0),
    }
    if name not in windows:
        raise layer.error(f"windowName {name!r}: use one of {', '.join(windows)}")
    return windows[name]()


class DftLayer(Layer):
    """``dft_layer_abs``: the magnitudes of the DFT of each frame of ``dftLength`` samples (default 512) after the
    window ``windowName`` (default hamming; its square root with ``flag_useSqrtWindow``), for the frequency bins
    0 .. dftLength // 2."""

    options = frozenset({"dftLength", "windowName", "flag_useSqrtWindow"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Window, then the DFT magnitudes."""
        ops = ctx.ops
        length = _int_opt(self, "dftLength", 512)
        src, mask = _frames(self, sources, length)
        window = _periodic_window(self, self.opts.get("windowName", "hamming"), length)
        if self.opts.get("flag_useSqrtWindow"):
            window = np.sqrt(window)
        bins = length // 2 + 1
        phase = 2.0 * np.pi * np.outer(np.arange(length), np.arange(bins)) / length  # (samples, bins)
        # the window folded into the DFT matrices: one matmul per part
        sin = ops.constant((window[:, None] * np.sin(phase)).astype("float32"))
        cos = ops.constant((window[:, None] * np.cos(phase)).astype("float32"))
        x = src.tensor * mask
        power = ops.square(ops.dot(x, sin)) + ops.square(ops.dot(x, cos))
        return src.with_tensor(ops.sqrt(ops.maximum(power, _FLOOR)) * mask, dim=bins)


def mel_filter_bank(dft_size: int, rate: float, low: float, high: float, n_filters: int) -> np.ndarray:
    """Triangular mel filters (dft_size // 2 + 1, n_filters) over the DFT bins, as RETURNN's MfccLayer builds them
    (Huang et al., Spoken Language Processing, p. 314; not area-normalised)."""
    def mel(freq: float) -> float:
        return 1125.0 * np.log(1.0 + freq / 700.0)

    def inv_mel(value: float) -> float:
        return 700.0 * (np.exp(value / 1125.0) - 1.0)

    step = (mel(high) - mel(low)) / (n_filters + 1.0)
    edges = [float(np.round(dft_size / rate * inv_mel(mel(low) + m * step))) for m in range(n_filters + 2)]
    bank = np.zeros((dft_size // 2 + 1, n_filters))
    for i in range(n_filters):
        left, centre, right = edges[i], edges[i + 1], edges[i + 2]
        rising = np.arange(int(left), int(centre))
        bank[rising, i] = 2.0 * (rising - left) / ((right - left) * (centre - left))
        falling = np.arange(int(centre), int(right))
        bank[falling, i] = 2.0 * (right - falling) / ((right - left) * (right - centre))
    return bank


class MfccLayer(Layer):
    """``mfcc_layer``: MFCCs from DFT magnitudes (a ``dft_layer_abs`` source of ``dftSize`` // 2 + 1 bins): the log
    of the power through ``nrOfFilters`` mel filters between ``fl`` and ``fh`` (default half of
    ``samplingFrequency``), then RETURNN's cosine transform ``cos(pi / F * i * (j + 1))``, the first
    ``nrOfMfccCoefficients`` (default all) kept. The log is floored at 1e-20 (RETURNN's gave -inf for silence)."""

    options = frozenset({"dftSize", "samplingFrequency", "fl", "fh", "nrOfFilters", "nrOfMfccCoefficients"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Mel filter bank, log, cosine transform."""
        ops = ctx.ops
        dft_size = _int_opt(self, "dftSize", 512)
        n_filters = _int_opt(self, "nrOfFilters", 40)
        n_coeffs = _int_opt(self, "nrOfMfccCoefficients", n_filters) if self.opts.get(
            "nrOfMfccCoefficients") is not None else n_filters
        if n_coeffs > n_filters:
            raise self.error(f"nrOfMfccCoefficients ({n_coeffs}) must not exceed nrOfFilters ({n_filters})")
        rate = self.float_opt("samplingFrequency", 16000.0)
        high = self.float_opt("fh", rate / 2.0) if self.opts.get("fh") is not None else rate / 2.0
        bank = mel_filter_bank(dft_size, rate, self.float_opt("fl", 0.0), high, n_filters)
        if not bank.any(axis=0).all():
            raise self.error(f"{n_filters} mel filters are too many for dftSize {dft_size}: some cover no DFT bin")
        src, mask = _frames(self, sources, dft_size // 2 + 1)
        rows = np.arange(n_filters)
        dct = np.cos(np.pi / n_filters * np.outer(rows, rows + 1))[:, :n_coeffs]
        energies = ops.dot(ops.square(src.tensor * mask), ops.constant(bank.astype("float32")))
        out = ops.dot(ops.log(ops.maximum(energies, _FLOOR)), ops.constant(dct.astype("float32")))
        return src.with_tensor(out * mask, dim=n_coeffs)
