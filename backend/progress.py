"""Progress reporting shared by every stage.

A stage receives a `Progress` callable and calls it with (fraction 0-1, stage name). The caller
decides what it means: the CLI draws a bar, the service worker stores it and raises `Cancelled`
from inside the call when the job was cancelled, so long loops stop within one iteration.
"""
from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def __call__(self, fraction: float, stage: str) -> None: ...


def no_progress(fraction: float, stage: str) -> None:
    """A Progress that ignores reports."""


def sub_progress(progress: Progress, start: float, end: float) -> Progress:
    """Map a sub-task's 0-1 progress into [start, end] of the parent's."""

    def report(fraction: float, stage: str) -> None:
        progress(start + (end - start) * min(max(fraction, 0.0), 1.0), stage)

    return report


class BarProgress:
    """Terminal progress bar for the CLI (tqdm), one bar across all stages."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=1000, bar_format="{desc} |{bar}| {percentage:3.0f}% [{elapsed}<{remaining}]")
        self._stage = ""

    def __call__(self, fraction: float, stage: str) -> None:
        if stage != self._stage:
            self._stage = stage
            self._bar.set_description_str(stage)
        self._bar.n = int(1000 * min(max(fraction, 0.0), 1.0))
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()
