"""A named registry (timm's pattern): models, tasks and variants each keep one, and unknown names get close matches."""

from __future__ import annotations

import difflib
import fnmatch
from typing import Generic, TypeVar

from harness.errors import HarnessError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, listing_hint: str = ""):
        self.kind, self.listing_hint, self._items = kind, listing_hint, {}

    def add(self, name: str, item: T) -> T:
        self._items[name] = item
        return item

    def remove(self, name: str) -> None:
        del self._items[name]

    def names(self, pattern: str = "*") -> list[str]:
        """Names in registration order, filtered by a shell-style pattern."""
        return [n for n in self._items if fnmatch.fnmatch(n, pattern)]

    def get(self, name: str) -> T:
        if name not in self._items:
            close = difflib.get_close_matches(name, self._items, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"known {self.kind}s: {', '.join(self._items)}"
            raise HarnessError(f"unknown {self.kind} '{name}': {hint}{self.listing_hint}")
        return self._items[name]
