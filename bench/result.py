"""What a scenario returns: figures, targets met or not, and notes, as a plain dict."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class Result:
    name: str
    title: str
    tables: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profile: list[str] = field(default_factory=list)
    #: Seconds spent loading data before measuring (reported, not measured).
    load_seconds: float = 0.0

    def table(self, caption: str, rows: list[dict[str, Any]]) -> None:
        self.tables.append((caption, rows))

    def target(self, label: str, measured: str, met: bool) -> None:
        self.targets.append({"target": label, "measured": measured, "met": met})

    def note(self, text: str) -> None:
        self.notes.append(text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "tables": [{"caption": c, "rows": r} for c, r in self.tables],
            "targets": self.targets,
            "notes": self.notes,
            "profile": self.profile,
            "load_seconds": self.load_seconds,
        }


def ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def median(runs: Sequence[T], key: Callable[[T], Any]) -> T:
    """The run of median ``key`` (of an odd number of runs; the upper middle of an
    even): every scenario that runs rounds reports this one."""
    return sorted(runs, key=key)[len(runs) // 2]
