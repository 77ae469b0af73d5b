"""What both kinds of command share: the user-facing error and how an input is shown in one line."""

from __future__ import annotations

import json
from typing import Any


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def preview(item: Any) -> str:
    text = item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)
    return text if len(text) <= 70 else text[:67] + "..."
