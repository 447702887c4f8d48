"""`data.where`: keep the rows whose fields pass every condition, e.g.

    where: ["category == sub", "pass_rate <= 0.5", "concepts contains borrow", "difficulty in [3, 4]"]

A condition is FIELD OP VALUE; OP is one of == != < <= > >= in, not in, contains (a list field holds the
value); VALUE is read as YAML (0.5 is a number, sub or 'sub' a string, [a, b] a list). A row without the
field fails the condition; a field that no row has is an error naming it and the file.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from rlkit.errors import DataError

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt,
    "not in": lambda field, value: field not in value, "in": lambda field, value: field in value,
    "contains": lambda field, value: value in field,
}
_CONDITION = re.compile(r"^\s*([A-Za-z_][\w]*)\s*(==|!=|<=|>=|<|>|\bnot in\b|\bin\b|\bcontains\b)\s*(.+?)\s*$")


@dataclass(frozen=True)
class Condition:
    text: str
    field: str
    op: str
    value: Any

    def holds(self, row: dict[str, Any]) -> bool:
        if self.field not in row:
            return False
        return bool(OPERATORS[self.op](row[self.field], self.value))


def parse_condition(text: str) -> Condition:
    """A ValueError saying what a condition looks like when `text` is not one."""
    match = _CONDITION.match(text)
    if not match:
        raise ValueError(f"bad condition {text!r}: expected FIELD OP VALUE with OP one of {', '.join(OPERATORS)}, e.g. 'pass_rate <= 0.5'")
    field, op, raw = match.groups()
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    if op in ("in", "not in") and not isinstance(value, list):
        raise ValueError(f"bad condition {text!r}: '{op}' needs a list, e.g. [sub, mul1]")
    return Condition(text, field, op, value)


def filter_rows(rows: Sequence[dict[str, Any]], conditions: Sequence[str], label: str) -> list[int]:
    """Indices of the rows that pass every condition."""
    parsed = [parse_condition(text) for text in conditions]
    for condition in parsed:
        if not any(condition.field in row for row in rows):
            fields = ", ".join(sorted(rows[0])) if rows else "none"
            raise DataError(f"{label}: data.where field '{condition.field}' (in {condition.text!r}) is in no row; rows have: {fields}")
    kept = []
    for index, row in enumerate(rows):
        try:
            if all(c.holds(row) for c in parsed):
                kept.append(index)
        except TypeError:
            bad = next(c for c in parsed if c.field in row and _raises(c, row))
            raise DataError(
                f"{label} row {index + 1}: data.where {bad.text!r} cannot compare {bad.field}={row[bad.field]!r} with {bad.value!r}"
            ) from None
    return kept


def _raises(condition: Condition, row: dict[str, Any]) -> bool:
    try:
        condition.holds(row)
    except TypeError:
        return True
    return False
