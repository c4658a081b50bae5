""":class:`RawWavDataset`: PCM wav files as framed waveforms, read with the standard library's ``wave``."""

from __future__ import annotations

import os
import wave
from collections.abc import Sequence
from typing import Any

import numpy as np

from returnn_core.datasets import Dataset, DataSpec
from returnn_core.errors import ConfigError, DatasetError

_PCM_DTYPES = {1: np.uint8, 2: np.int16, 4: np.int32}


def read_wav(path: str) -> tuple[np.ndarray, int]:
    """Mono float32 samples (channels averaged, in the file's integer scale) and the sample rate."""
    try:
        with wave.open(path, "rb") as w:
            width, channels, rate, n = w.getsampwidth(), w.getnchannels(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except FileNotFoundError:
        raise DatasetError(f"wav file {path} does not exist") from None
    except (wave.Error, EOFError, OSError) as exc:
        raise DatasetError(f"wav file {path} cannot be read (PCM wav expected): {exc}") from None
    if width == 3:  # 24 bit: widen to int32 by hand
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        ints = (b[:, 0].astype(np.int32) | (b[:, 1].astype(np.int32) << 8) | (b[:, 2].astype(np.int32) << 16))
        samples = np.where(ints >= 1 << 23, ints - (1 << 24), ints).astype(np.float32)
    elif width in _PCM_DTYPES:
        samples = np.frombuffer(raw, dtype=np.dtype(_PCM_DTYPES[width]).newbyteorder("<")).astype(np.float32)
        if width == 1:
            samples -= 128.0
    else:
        raise DatasetError(f"wav file {path}: {8 * width}-bit samples are not supported")
    samples = samples.reshape(-1, channels).mean(axis=1)
    return samples, rate


class RawWavDataset(Dataset):
    """Each wav file of ``listFile`` (one path per line, relative to the list) or ``files`` is one seq.

    ``data`` is (frames, frameLength): windows of ``frameLength`` samples every ``frameShift`` samples, the
    last one zero-padded. Samples keep their integer scale unless ``normalize`` scales them to [-1, 1).
    """

    def __init__(
        self,
        listFile: str | None = None,  # noqa: N803 - RETURNN's option name
        frameLength: int = 1,  # noqa: N803
        frameShift: int | None = None,  # noqa: N803
        files: Sequence[str] | None = None,
        normalize: bool = False,
        sample_rate: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (listFile is None) == (files is None):
            raise ConfigError(f"{self.name}: give exactly one of listFile and files")
        if listFile is not None:
            if not os.path.isfile(listFile):
                raise DatasetError(f"{self.name}: list file {listFile} does not exist")
            base = os.path.dirname(os.path.abspath(listFile))
            with open(listFile, encoding="utf-8") as f:
                self.files = [os.path.join(base, line.strip()) for line in f if line.strip()]
        else:
            self.files = [os.fspath(p) for p in files or ()]
        if not self.files:
            raise DatasetError(f"{self.name}: no wav files listed")
        self.frame_length = int(frameLength)
        self.frame_shift = int(frameShift) if frameShift else self.frame_length
        if self.frame_length < 1 or self.frame_shift < 1:
            raise ConfigError(f"{self.name}: frameLength and frameShift must be >= 1")
        self.normalize = bool(normalize)
        self.sample_rate = sample_rate

    def data_specs(self) -> dict[str, DataSpec]:
        """Dense ``data`` of dim ``frameLength``."""
        return {"data": DataSpec(self.frame_length)}

    def _num_total_seqs(self) -> int:
        return len(self.files)

    def _load_seq(self, corpus_idx: int) -> dict[str, np.ndarray]:
        path = self.files[corpus_idx]
        samples, rate = read_wav(path)
        if self.sample_rate is not None and rate != self.sample_rate:
            raise DatasetError(f"{self.name}: wav file {path} has sample rate {rate}, expected {self.sample_rate}")
        if self.normalize:
            with wave.open(path, "rb") as w:
                samples = samples / float(1 << (8 * w.getsampwidth() - 1))
        return {"data": self.frame(samples)}

    def frame(self, samples: np.ndarray) -> np.ndarray:
        """(num_frames, frameLength) windows, the last one zero-padded."""
        n, size, shift = len(samples), self.frame_length, self.frame_shift
        num = max(int(np.ceil(max(n - size, 0) / shift)) + 1, 1) if n else 0
        padded = np.zeros((num - 1) * shift + size if num else 0, dtype=np.float32)
        padded[:n] = samples[: len(padded)]
        idx = np.arange(size)[None, :] + shift * np.arange(num)[:, None]
        return padded[idx] if num else np.zeros((0, size), dtype=np.float32)

    def _seq_tag(self, corpus_idx: int) -> str:
        return self.files[corpus_idx]
