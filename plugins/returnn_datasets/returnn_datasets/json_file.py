"""Reading the JSON side files of RETURNN datasets (``seq_lens_file``, ``orth_replace_map_file``)."""

from __future__ import annotations

import json
from typing import Any

from returnn_core.errors import DatasetError


def read_json_object(path: str, what: str, expected: str) -> dict[str, Any]:
    """The JSON object in ``path``; ``what`` names the file in errors, ``expected`` says what it must map."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{what} {path} cannot be read as JSON: {exc}") from None
    if not isinstance(value, dict):
        raise DatasetError(f"{what} {path} must hold a JSON object {expected}")
    return value
