"""ProgressLog: a line for the first and last step, on a step interval, and whenever the time
interval has passed; each with pace and time left."""

from __future__ import annotations

import logging

import pytest

from ml.progress import ProgressLog, format_seconds


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.progress"]


def test_lines_at_first_last_and_after_the_time_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = logging.getLogger("test.progress")
    p = ProgressLog(log, "writer stage2", 10, every_s=30.0, clock=clock)
    written = []
    with caplog.at_level(logging.INFO, logger="test.progress"):
        for step in range(1, 11):
            clock.t += 12.0  # a slow CPU step
            written.append(p.update(step, "loss 1.000"))
    # step 1 (first), then whenever 30 s have passed since the last line (12 s steps: every 3rd), step 10 (last)
    assert written == [True, False, False, True, False, False, True, False, False, True]
    lines = _lines(caplog)
    assert lines[0] == "writer stage2: 1/10 steps (12.0 s/step, 01:48 left) loss 1.000"
    assert lines[-1] == "writer stage2: 10/10 steps (12.0 s/step, 00:00 left) loss 1.000"


def test_fast_loops_report_a_rate_and_keep_their_step_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    p = ProgressLog(logging.getLogger("test.progress"), "tiny LM", 100, every_s=30.0, every_steps=20, clock=clock)
    with caplog.at_level(logging.INFO, logger="test.progress"):
        for step in range(1, 101):
            clock.t += 0.25
            p.update(step)
    lines = _lines(caplog)
    assert [int(m.split(": ")[1].split("/")[0]) for m in lines] == [1, 20, 40, 60, 80, 100]
    assert lines[1] == "tiny LM: 20/100 steps (4.00 steps/s, 00:20 left)"


def test_epochs_as_the_unit_and_no_step_yet(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    p = ProgressLog(logging.getLogger("test.progress"), "dense head", 25, unit="epochs", clock=clock)
    with caplog.at_level(logging.INFO, logger="test.progress"):
        clock.t += 31.0
        assert p.update(0)  # the interval passed before the first epoch ended: no pace yet
        clock.t += 4.0
        assert p.update(1)
    assert p.lines == 2
    assert _lines(caplog) == [
        "dense head: 0/25 epochs (started 00:31 ago, ? left)",
        "dense head: 1/25 epochs (35.0 s/epoch, 14:00 left)",
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "00:00"), (8.2, "00:08"), (75.4, "01:15"), (3725, "1:02:05"), (-3, "00:00"), (float("inf"), "?")],
)
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text
