"""``prepare`` frees each study's pixels once it is encoded (unless asked to keep them): what is
left holds no reference to the volume. A ``pixels[:0]`` view looked empty but kept every volume
alive, every encoded study's, and bounded the training set on a 24 GB machine."""

from __future__ import annotations

import gc
import weakref

import numpy as np

from ml.agents.train import prepare
from ml.data import loader


def test_encoded_studies_keep_no_pixel_buffer(agents_synth_dir, tiny_pipeline_dir, tmp_path, monkeypatch):
    volumes: list[weakref.ref] = []  # every volume the loader hands out, watched without keeping it
    load = loader.StudyLoader.load

    def watched(self, *args, **kwargs):
        study = load(self, *args, **kwargs)
        volumes.extend(weakref.ref(s.pixels) for s in study.series)
        return study

    monkeypatch.setattr(loader.StudyLoader, "load", watched)
    manifest = agents_synth_dir / "manifest.jsonl"
    prep = prepare(manifest, tiny_pipeline_dir / "spinefm", cache_dir=tmp_path / "slices")
    gc.collect()
    series = [s for f in prep.feats for s in f.study.series]
    assert len(series) == len(volumes) == 8  # 2 studies x 4 series
    assert all(s.pixels.size == 0 and s.pixels.base is None for s in series)
    assert all(v() is None for v in volumes)  # no volume is alive any more
    assert all(len(f.embedding.series) == len(f.study.series) for f in prep.feats)  # encoded first

    kept = prepare(manifest, tiny_pipeline_dir / "spinefm", keep_pixels=True, cache_dir=tmp_path / "slices")
    assert all(s.pixels.size > 0 and np.isfinite(s.pixels).all() for f in kept.feats for s in f.study.series)
