"""The hanging protocol's slot choice (ohif-extension/src/hangingProtocol.ts ``assignSlots``) on
series lists as the study context sends them: a missing sequence's slot takes its next best
series (the STIR slot a T2-weighted one, whatever the series numbers), never a blank viewport.
Run in node on the bundled module; the browser e2e checks the same on real studies."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.browser import support

pytestmark = [pytest.mark.browser]

RUNNER = """
import { readFileSync } from 'node:fs';
import { assignSlots } from './slots.mjs';
const cases = JSON.parse(readFileSync(0, 'utf8'));
console.log(JSON.stringify(cases.map(c => assignSlots(c))));
"""


def _series(uid: str, subtype: str, plane: str = "sagittal", number: int = 1, images: int = 15) -> dict:
    return {"series_uid": uid, "subtype": subtype, "plane": plane, "number": number, "images": images,
            "description": uid}  # fmt: skip


@pytest.fixture(scope="module")
def slots_runner(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hanging")
    support.bundle_extension_module("src/hangingProtocol.ts", out, "slots.mjs")
    (out / "run.mjs").write_text(RUNNER)
    return out


def _assign(runner: Path, cases: list[list[dict]]) -> list[dict]:
    proc = subprocess.run(
        [support.node(), str(runner / "run.mjs")], input=json.dumps(cases), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_study_without_stir_shows_the_sagittal_t2_in_the_stir_slot(slots_runner: Path) -> None:
    t1_first = [_series("t1", "T1", number=1), _series("t2", "T2", number=2), _series("ax", "T2", "axial", 3)]
    t2_first = [_series("t2", "T2", number=1), _series("t1", "T1", number=2), _series("ax", "T2", "axial", 3)]
    more_t1 = [_series("t1", "T1", number=1, images=20), _series("t2", "T2", number=2), _series("ax", "T2", "axial", 3)]
    for slots in _assign(slots_runner, [t1_first, t2_first, more_t1]):
        assert slots == {"sagT2": "t2", "sagT1": "t1", "sagSTIR": "t2", "axT2": "ax"}


def test_an_unused_series_comes_before_a_repeat_and_dixon_fills_t1_and_stir_slots(slots_runner: Path) -> None:
    with_post = [_series("t1", "T1", number=1), _series("t2", "T2", number=2),
                 _series("gd", "T1_POSTCONTRAST", number=3), _series("ax", "T2", "axial", 4)]  # fmt: skip
    # no plain T1: Dixon fat (fat bright, as on a T1) in the T1 slot, Dixon water in the STIR slot
    no_t1 = [_series("t2", "T2", number=2), _series("fat", "DIXON_FAT", number=3, images=5),
             _series("w", "DIXON_WATER", number=4), _series("ax", "T2", "axial", 5)]  # fmt: skip
    first, second = _assign(slots_runner, [with_post, no_t1])
    assert first == {"sagT2": "t2", "sagT1": "t1", "sagSTIR": "gd", "axT2": "ax"}  # unused before repeated
    assert second == {"sagT2": "t2", "sagT1": "fat", "sagSTIR": "w", "axT2": "ax"}
