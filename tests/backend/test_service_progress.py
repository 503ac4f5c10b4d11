"""The progress both engines send to a job's record (worker.JobProgress, ray_engine.BoardProgress):
clamped, throttled per stage, a new stage at once, a NaN keeping the last fraction."""
from __future__ import annotations

import math

from backend.service import worker
from backend.service.worker import STAGE_CHARS, ThrottledProgress


class Recorded(ThrottledProgress):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[float, str]] = []

    def send(self, fraction: float, stage: str) -> None:
        self.sent.append((fraction, stage))


def test_reports_are_clamped_throttled_and_new_stages_pass_at_once(monkeypatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(worker.time, "monotonic", lambda: clock[0])
    progress = Recorded()
    progress(-0.5, "loading")
    progress(0.3, "loading")  # within REPORT_EVERY_S of the last report of this stage: held back
    progress(2.0, "fitting")  # a new stage goes out at once
    progress(math.nan, "fitting")  # held back, and keeps the last fraction
    clock[0] += worker.REPORT_EVERY_S
    progress(math.nan, "fitting")
    progress(0.5, "x" * (STAGE_CHARS + 50))
    assert progress.sent == [(0.0, "loading"), (1.0, "fitting"), (1.0, "fitting"), (0.5, "x" * STAGE_CHARS)]
