"""RETURNN's ``cache_size`` config key: the HDF cache of the train, dev and eval sets."""

from __future__ import annotations

import re

from returnn_core.config import Config
from returnn_core.errors import ConfigError

SETS = ("train", "dev", "eval")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMG]?)\s*$")
_UNIT = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def cache_byte_sizes(config: Config) -> dict[str, int] | None:
    """Bytes of HDF cache per set from ``cache_size``, or None when unset.

    As RETURNN: one value is shared evenly by the sets the config has; two are train and dev (eval 0); three are
    train, dev, eval. A value is a number of bytes with an optional suffix K, M or G.
    """
    if not config.has("cache_size"):
        return None
    values = [str(v) for v in config.list("cache_size")]
    factor = 1.0
    if len(values) == 1:
        values *= 3
        factor /= sum(1 for key in SETS if config.has(key))
    elif len(values) == 2:
        values.append("0")
    if len(values) != 3:
        raise ConfigError(f"cache_size {config.value('cache_size')!r}: give one size, or two or three (train, dev, "
                          "eval), e.g. '1G' or '1G,256M,0'")
    sizes = {}
    for key, text in zip(SETS, values):
        m = _SIZE.match(text.upper())
        if not m:
            raise ConfigError(f"cache_size: {text!r} is not a size; use bytes or a number with K, M or G ('512M')")
        size = int(factor * float(m.group(1)) * _UNIT[m.group(2)])
        sizes[key] = size + 1 if size > 0 else 0  # RETURNN rounds up by one byte
    return sizes
