"""The ``network`` of a line-based config: text that spells a JSON object or a RETURNN dict literal."""

from __future__ import annotations

import json
from typing import Any

from returnn_core.config._literal import parse_literal
from returnn_core.errors import ConfigError


def network_from_text(text: str) -> dict[str, Any]:
    """The layer dict ``text`` spells (JSON first, as RETURNN's line-based configs hold it, else a Python literal)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as json_exc:
        try:
            value = parse_literal(text)
        except ValueError:
            raise ConfigError(f"network: the text is neither JSON ({json_exc.msg} at line {json_exc.lineno} "
                              f"column {json_exc.colno}) nor a RETURNN dict literal") from None
    if not isinstance(value, dict):
        raise ConfigError(f"network: expected a dict of layers, got {type(value).__name__}")
    return value
