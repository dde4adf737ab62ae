"""The level of a finding from both planes' cells (``ml.agents.cell_levels``): each source reads
its level, the served config reads the axially graded conditions from both planes, and the box
is placed on the cells of the level chosen."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ml.agents.cell_levels import choose_level, finding_levels, level_evidence
from ml.agents.cell_localization import _sourced_level
from ml.conditions import CONDITION_KEYS

J = CONDITION_KEYS.index("disc_herniation")


def test_each_source_reads_its_level():
    sag, ax = {0: 2.0, 1: 1.0}, {1: 3.0, 2: 0.5}
    assert choose_level(sag, ax, "sagittal") == 0
    assert choose_level(sag, ax, "axial") == 1
    # both: 0 -> 2.0 + 0.5 (no axial there: the weakest axial), 1 -> 1.0 + 3.0, 2 -> 1.0 + 0.5
    assert choose_level(sag, ax, "both") == 1
    assert choose_level(sag, {}, "axial") is None  # no axial view
    assert choose_level(sag, {}, "both") == 0  # both without axial evidence: the sagittal reading
    assert choose_level({}, {}, "sagittal") is None


def test_a_finding_over_several_levels_is_at_each_of_them():
    lipomatosis = {"condition": "epidural_lipomatosis", "level": "L3-4", "detail": {"levels": ["L3-4", "L4-5"]}}
    assert finding_levels(lipomatosis) == {"L3-4", "L4-5"}
    assert finding_levels({"condition": "disc_herniation", "level": "L5-S1", "detail": {}}) == {"L5-S1"}


def _scene():
    """A sagittal view of 4 x 4 cells whose level head reads the upper half as L3-4 and the lower
    half as L4-5, and two axial slices, the first read as L3-4, the second as L4-5. The
    herniation's cells fire most in the upper half (the bulging disc above the finding), less in
    the lower half, and on the second axial slice."""
    w = np.zeros((2, 29))
    w[1, 5] = 10.0  # the sagittal box-centre y term of ``level_design``
    w[1, 6] = 20.0  # the axial relative slice position term: the second axial slice is L4-5
    agents = SimpleNamespace(levels=["L3-4", "L4-5"], level_w=w, level_b=np.array([0.0, -5.0]))
    geometry = SimpleNamespace(size=16)
    series = [
        SimpleNamespace(geometry=geometry, sop_uids=["s"]),
        SimpleNamespace(geometry=geometry, sop_uids=["a0", "a1"]),
    ]
    feat = SimpleNamespace(study=SimpleNamespace(series=series))
    d = {"views": [(0, 0, 0), (1, 1, 0), (1, 1, 1)], "crops": [(0, 0, 16)] * 3}
    z = np.full((3, 4, 4, len(CONDITION_KEYS)), -9.0)  # [V, G, G, 17]
    z[0, 1, 1, J] = 3.0  # sagittal, upper half: L3-4
    z[0, 3, 2, J] = 2.5  # sagittal, lower half: L4-5
    z[1, 2, 2, J] = 0.0  # the axial slice at L3-4
    z[2, 2, 2, J] = 4.0  # the axial slice at L4-5
    return feat, d, z, agents


def test_the_evidence_of_each_plane_per_level():
    feat, d, z, agents = _scene()
    sag, ax = level_evidence(feat, d, z, J, agents, "disc_herniation")  # type: ignore[arg-type]
    assert sag == {0: 3.0, 1: 2.5}
    assert ax == {0: 0.0, 1: 4.0}


def test_the_box_goes_on_the_cells_of_the_chosen_level():
    feat, d, z, agents = _scene()
    for source in ("axial", "both"):  # both: L3-4 3.0 + 0.0, L4-5 2.5 + 4.0
        got = _sourced_level(feat, d, z, J, agents, "disc_herniation", [0], {"disc_herniation": source})  # type: ignore[arg-type]
        assert got is not None
        view, keep, level = got
        assert (view, agents.levels[level]) == (0, "L4-5")
        assert keep[2:].all()  # the lower half of the sagittal view only
        assert not keep[:2].any()
    assert _sourced_level(feat, d, z, J, agents, "disc_herniation", [0], {}) is None  # sagittal: the default path


def test_the_axially_graded_conditions_read_both_planes_by_default():
    from ml.agents.localization import LocalizationConfig

    assert set(LocalizationConfig().level_both_planes) == {
        "canal_stenosis", "subarticular_stenosis", "foraminal_narrowing", "disc_herniation"
    }  # fmt: skip


def test_the_served_localization_reads_the_level_from_both_planes_where_the_config_says():
    """``localize_from_cells`` with the agents' config: herniation (axially graded) gets the level
    both planes agree on, L4-5, and its box on those cells; with the rule off it gets the best
    sagittal cell's level, L3-4."""
    from ml.agents.analysis import ConditionResult
    from ml.agents.cell_localization import localize_from_cells
    from ml.agents.localization import LocalizationConfig
    from ml.data.preprocess import SeriesGeometry

    feat, d, z, agents = _scene()
    sag = SeriesGeometry(rows=16, columns=16, size=16, positions=[[0.0, 0.0, 0.0]],
                         orientations=[[0.0, 1, 0, 0, 0, -1]], spacing=[1.0, 1.0])  # fmt: skip
    ax = SeriesGeometry(rows=16, columns=16, size=16, positions=[[-8.0, -8.0, z0] for z0 in (10.0, -10.0)],
                        orientations=[[1.0, 0, 0, 0, 1, 0]] * 2, spacing=[1.0, 1.0])  # fmt: skip
    feat.study.series[0].geometry, feat.study.series[1].geometry = sag, ax
    for s, uid, plane in ((feat.study.series[0], "sag", "sagittal"), (feat.study.series[1], "ax", "axial")):
        s.series_uid, s.plane, s.frame_numbers = uid, plane, []
    feat.study.series[0].sequence_class = "T2"
    agents.cfg, agents.meta = LocalizationConfig(), {}

    def level(sources: dict | None) -> tuple[str, list[float]]:
        result = ConditionResult("disc_herniation", 0.9, True, 0.5)
        localize_from_cells(feat, d, z, [result], agents, level_sources=sources)  # type: ignore[arg-type]
        return result.level, result.boxes[0].xyxy

    served, box = level(None)
    assert served == "L4-5"
    assert box[1] >= 8.0  # on the lower half's cells (rows 2-3 of 4 on a 16 px view)
    assert level({})[0] == "L3-4"  # every level on the sagittal box: the bulging disc above


def test_the_level_of_every_cell_is_the_level_head_on_a_point_box_there():
    """``level_cells`` (all cells of a view in one design) answers, cell for cell, what
    ``level_of`` answers for a point box at that cell."""
    from ml.agents.levels import level_cells, level_of

    rng = np.random.default_rng(5)
    n_feat = len(level_design_row())
    agents = SimpleNamespace(
        levels=["L1-2", "L2-3", "L3-4", "L4-5", "L5-S1"],
        level_w=rng.normal(size=(5, n_feat)),
        level_b=rng.normal(size=5),
    )
    centres = rng.uniform(size=(64, 2))  # [N, 2] normalised x, y
    for plane, rel in (("sagittal", 0.5), ("axial", 0.2), (None, 0.9)):
        got = level_cells(agents, plane, rel, centres, "disc_herniation")
        want = [agents.levels.index(level_of(agents, plane, rel, np.array([x, y, x, y]), "disc_herniation"))
                for x, y in centres]  # fmt: skip
        assert got.tolist() == want


def level_design_row() -> np.ndarray:
    from ml.agents.levels import level_design

    return level_design("sagittal", 0.5, np.zeros(4), "disc_herniation")
