"""PyTensor's compile cache goes under the test cache dir too (set before PyTensor is first imported)."""

from __future__ import annotations

import os

from returnn_core.paths import cache_dir

if "base_compiledir" not in os.environ.get("PYTENSOR_FLAGS", ""):
    extra = f"base_compiledir={cache_dir('pytensor')},blas__ldflags="
    os.environ["PYTENSOR_FLAGS"] = ",".join(f for f in (os.environ.get("PYTENSOR_FLAGS", ""), extra) if f)
