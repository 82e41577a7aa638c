"""WHERE clauses built from the predicates a query was given, every value a numbered bind parameter ($1, $2, ...)."""

from __future__ import annotations

from typing import Any


class BoundPredicates:
    """The conditions of a WHERE clause and their arguments; each value's placeholder is numbered as it is added."""

    def __init__(self) -> None:
        self.conditions: list[str] = []
        self.arguments: list[Any] = []

    def bind(self, value: Any) -> str:
        """Adds `value` as the next argument and returns its placeholder."""
        self.arguments.append(value)
        return f"${len(self.arguments)}"

    def add(self, condition: str, *values: Any) -> None:
        """Adds `condition`, in which each `{}` stands for the placeholder of the next of `values`."""
        self.conditions.append(condition.format(*(self.bind(value) for value in values)))

    def joined(self) -> str:
        """The conditions joined with AND (empty when there are none)."""
        return " AND ".join(self.conditions)
