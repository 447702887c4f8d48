"""The code in a completion: the last fenced python block when there is one, else the whole text."""

from __future__ import annotations

import re

THINK_END = "</think>"
# ```python / ```py / ```python3 / bare ``` fences; the closing fence may be missing when generation was cut off
FENCE = re.compile(r"```[ \t]*(?P<lang>[A-Za-z0-9_+-]*)[^\n]*\n(?P<body>.*?)(?:```|\Z)", re.DOTALL)
PYTHON_TAGS = {"python", "py", "python3", "py3"}


def extract_code(completion: str) -> str:
    """Code to run: the last ```python block (or, failing that, the last untagged block) after the last
    </think>; the text itself when it has no fenced block (a base model continuing a function body)."""
    text = completion.rsplit(THINK_END, 1)[-1]
    blocks = [(m.group("lang").lower(), m.group("body")) for m in FENCE.finditer(text)]
    tagged = [body for lang, body in blocks if lang in PYTHON_TAGS]
    if tagged:
        return tagged[-1]
    untagged = [body for lang, body in blocks if not lang]
    if untagged:
        return untagged[-1]
    return text
