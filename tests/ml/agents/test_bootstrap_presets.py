"""The bootstrap presets: ``large`` is the demo's recipe on more studies and nothing else, so the
figures documented for "the demo's recipe on 900 training studies" are what ``--preset large``
builds; each preset caches under its own key."""

from __future__ import annotations

from dataclasses import asdict

from ml.agents.bootstrap import DEMO, LARGE, PRESETS


def test_large_is_the_demos_recipe_on_900_studies():
    demo, large = asdict(DEMO), asdict(LARGE)
    assert {k for k in demo if demo[k] != large[k]} == {"name", "studies"}
    assert (large["studies"], large["name"]) == (900, "large")
    assert PRESETS["large"] is LARGE
    assert PRESETS["demo"] is DEMO
    assert len({p.key() for p in PRESETS.values()}) == len(PRESETS)
