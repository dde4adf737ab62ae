"""The pieces of localization from the dense head's cells, on hand-made inputs: the box
regressor recovers offsets it can see, the regressed box is the firing cells' vote, side rules
come from the training findings, the axial box goes on the slice through the sagittal box, and
the side is read on the sagittal box (the offset of its slice), the central margin learnt the same
way, and the sagittal box is voted by the cells at the level of the best one."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ml.agents.analysis import BoxResult
from ml.agents.cell_localization import _nearest_axial, _place, _same_level, decide_side, regressed_box, side_offset_mm
from ml.agents.dense_boxes import LOG_SIZE_CLIP, OFFSET_CLIP, fit_box_regressor, regress
from ml.agents.localization_train import side_offsets, side_rules
from ml.conditions import CONDITION_KEYS
from ml.data.preprocess import SeriesGeometry


def test_the_box_regressor_recovers_offsets_and_sizes_carried_by_the_features():
    rng = np.random.default_rng(0)
    n, f = 400, 6
    x = rng.normal(size=(n, f)).astype(np.float32)  # [n, F]
    # dx, dy are linear in two features; the sizes constant (log 0.5 cells)
    y = np.stack([0.4 * x[:, 0], -0.3 * x[:, 1], np.full(n, np.log(0.5)), np.full(n, np.log(0.5))], 1)
    j = CONDITION_KEYS.index("disc_herniation")
    a = fit_box_regressor([x[:200], x[200:]], [np.full(200, j), np.full(200, j)], [y[:200], y[200:]], alpha=1.0)
    assert a["reg_n"][j] == n
    assert a["reg_n"].sum() == n
    pred = regress(a, x)[:, j]  # [n, 4]
    assert np.abs(pred - y).max() < 0.05
    other = CONDITION_KEYS.index("hemangioma")
    assert np.all(regress(a, x)[:, other] == 0)  # no training cells: zero offset, log size 0 (one cell)


def test_the_regressor_from_running_sums_is_a_ridge_on_the_standardised_rows():
    """Training reduces each study's rows to sums as it comes (``BoxMoments``): the result is
    scikit-learn's ridge on all rows, standardised over all of them, per condition."""
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(3)
    f, studies = 12, 30
    scale, shift = rng.uniform(0.2, 6.0, f), rng.normal(0, 3, f)  # features far from standard
    rows = [(rng.normal(size=(int(rng.integers(0, 40)), f)) * scale + shift).astype(np.float32) for _ in range(studies)]
    conds = [rng.integers(0, 4, len(x)) for x in rows]
    targets = [(x[:, :4] * 0.1 + rng.normal(0, 0.2, (len(x), 4))).astype(np.float32) for x in rows]
    a = fit_box_regressor(rows, conds, targets, alpha=5.0, min_cells=20)
    x_all, c_all, y_all = np.concatenate(rows), np.concatenate(conds), np.concatenate(targets)
    xs = (x_all - x_all.mean(0)) / (x_all.std(0) + 1e-4)
    np.testing.assert_allclose(a["reg_mean"], x_all.mean(0), rtol=1e-5, atol=1e-5)
    for j in range(4):
        m = c_all == j
        assert a["reg_n"][j] == m.sum() >= 20
        ridge = Ridge(alpha=5.0).fit(xs[m], y_all[m])
        np.testing.assert_allclose(a["reg_w"][j], ridge.coef_.T, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(a["reg_b"][j], ridge.intercept_, rtol=1e-4, atol=1e-5)
    # the studies in another order: the same sums
    b = fit_box_regressor(rows[::-1], conds[::-1], targets[::-1], alpha=5.0, min_cells=20)
    np.testing.assert_allclose(a["reg_w"], b["reg_w"], rtol=1e-6, atol=1e-7)


def test_few_cells_give_the_mean_box_and_predictions_are_clipped():
    x = np.eye(5, dtype=np.float32)
    j = 0
    y = np.tile([5.0, -5.0, 4.0, -4.0], (5, 1))  # offsets and sizes beyond what a cell can know
    a = fit_box_regressor([x], [np.zeros(5, int)], [y], alpha=1.0, min_cells=20)
    assert np.all(a["reg_w"][j] == 0)  # too few cells: no weights, the mean as the bias
    out = regress(a, x)[:, j]
    assert np.allclose(out[:, 0], OFFSET_CLIP)
    assert np.allclose(out[:, 1], -OFFSET_CLIP)
    assert np.allclose(out[:, 2], LOG_SIZE_CLIP[1])
    assert np.allclose(out[:, 3], LOG_SIZE_CLIP[0])


def test_the_regressed_box_is_the_vote_of_the_firing_cells():
    z = np.full((4, 4), -9.0)
    z[1, 2] = 3.0  # one firing cell: its own box
    reg = np.zeros((4, 4, 4))
    reg[1, 2] = [0.25, -0.25, np.log(0.5), np.log(2.0)]
    cx, cy, w, h = regressed_box(z, reg, margin=1.0)
    assert (cx, cy) == pytest.approx((2.75, 1.25))
    assert (w, h) == pytest.approx((0.5, 2.0))
    z[1, 3] = 3.0  # a tied neighbour votes for the same point from its own cell
    reg[1, 3] = [-0.75, -0.25, np.log(0.5), np.log(2.0)]
    assert regressed_box(z, reg, margin=1.0)[:2] == pytest.approx((2.75, 1.25))


def test_side_rules_follow_the_training_findings():
    rules = side_rules(
        {
            "canal_stenosis": ["central"] * 40,
            "pars_defect": ["bilateral"] * 20 + ["right"] * 3 + ["left"],
            "foraminal_narrowing": ["left"] * 30 + ["right"] * 28 + ["central"],
            "disc_herniation": ["central"] * 40 + ["left"] * 25 + ["right"] * 25,
            "hemangioma": ["", ""],
        }
    )
    assert "hemangioma" not in rules
    assert decide_side(rules["canal_stenosis"], 20.0, 6.0) == "central"  # always central, wherever the box
    assert decide_side(rules["pars_defect"], -15.0, 6.0) == "bilateral"
    # left/right only: the sign decides, even near the midline (LPS: + is the patient's left)
    assert decide_side(rules["foraminal_narrowing"], 2.0, 6.0) == "left"
    assert decide_side(rules["foraminal_narrowing"], -2.0, 6.0) == "right"
    assert decide_side(rules["disc_herniation"], 2.0, 6.0) == "central"
    assert decide_side(rules["disc_herniation"], -9.0, 6.0) == "right"
    assert decide_side(rules["disc_herniation"], None, 6.0) == ""
    assert decide_side(None, 5.0, 6.0) == ""


class _Series:
    def __init__(self, z: list[float]) -> None:
        from ml.data.preprocess import SeriesGeometry

        self.geometry = SeriesGeometry(
            rows=64, columns=64, size=64, spacing=[1.0, 1.0],
            positions=[[0.0, 0.0, v] for v in z],
            orientations=[[1.0, 0, 0, 0, 1.0, 0]] * len(z),  # axial: normal along z
        )  # fmt: skip


def test_the_axial_box_goes_on_the_slice_through_the_sagittal_box():
    series = [None, _Series([0.0, 40.0, 80.0, 120.0])]
    views = [(0, 0, 7), (1, 1, 0), (1, 1, 1), (1, 1, 2), (1, 1, 3)]
    best_first = [1, 4, 2, 3]  # the axial views by their own score
    assert _nearest_axial(series, views, best_first, np.array([0.0, 5.0, 78.0])) == 3
    assert _nearest_axial(series, views, best_first, None) == 1


def test_the_central_margin_is_learnt_from_the_training_boxes():
    from ml.agents.localization_train import central_margin

    offsets = {"central": [-2.5, -1.0, 0.3, 1.4, 2.9], "left": [3.3, 6.0, 9.0], "right": [-3.5, -7.0]}
    margin = central_margin(offsets)
    assert margin is not None
    assert 2.9 < margin < 3.3  # between the widest central and the nearest paracentral finding
    assert central_margin({"left": [5.0], "right": [-5.0]}) is None  # nothing central to separate
    rules = side_rules(
        {"disc_herniation": ["central"] * 5 + ["left"] * 3 + ["right"] * 2}, {"disc_herniation": offsets}
    )
    rule = rules["disc_herniation"]
    assert decide_side(rule, 4.0, 6.0) == "left"  # paracentral: beyond the learnt margin, inside the default
    assert decide_side(rule, -2.0, 6.0) == "central"


def _study() -> list[SimpleNamespace]:
    """A sagittal T2 of 5 slices 4.4 mm apart at patient x -8.8 ... 8.8 (LPS: + is the patient's
    left; columns run posterior, rows down) and one axial slice (columns towards the patient's
    left, 1 mm pixels, x = column - 50)."""
    xs = (-8.8, -4.4, 0.0, 4.4, 8.8)
    sag = SeriesGeometry(rows=100, columns=100, size=100, positions=[[x, 0.0, 50.0] for x in xs],
                         orientations=[[0.0, 1, 0, 0, 0, -1]] * 5, spacing=[1.0, 1.0])  # fmt: skip
    ax = SeriesGeometry(rows=100, columns=100, size=100, positions=[[-49.5, -49.5, 0.0]],
                        orientations=[[1.0, 0, 0, 0, 1, 0]], spacing=[1.0, 1.0])  # fmt: skip
    sops = [f"sag-{k}" for k in range(5)]
    return [
        SimpleNamespace(series_uid="sag", plane="sagittal", sequence_class="T2", geometry=sag, sop_uids=sops),
        SimpleNamespace(series_uid="ax", plane="axial", sequence_class="T2", geometry=ax, sop_uids=["ax-0"]),
    ]


def _box(uid: str, k: int, xyxy: list[float]) -> BoxResult:
    return BoxResult(uid, f"{uid}-{k}", k, xyxy, [v / 100 for v in xyxy], 1.0)


def test_the_side_is_read_on_the_sagittal_box():
    series = _study()
    sag_box = _box("sag", 3, [40.0, 40.0, 50.0, 50.0])  # on the slice 4.4 mm left of the midline
    ax_box = _box("ax", 0, [35.0, 40.0, 45.0, 50.0])  # the axial cells fired right of it (x = -10)
    assert side_offset_mm(series, [sag_box, ax_box], 0.0) == pytest.approx(4.4)
    assert side_offset_mm(series, [ax_box, sag_box], 0.0) == pytest.approx(4.4)  # whatever the order
    assert side_offset_mm(series, [ax_box], 0.0) == pytest.approx(-10.0)  # no sagittal box: the axial one
    assert side_offset_mm(series, [sag_box], None) is None
    assert side_offset_mm(series, [], 0.0) is None


def test_the_training_offsets_are_measured_where_the_side_is_read():
    series = _study()
    study = SimpleNamespace(series=series)
    feat = SimpleNamespace(study=study)

    def ks(uid: str, pixels: int, box: list[float]) -> dict:
        return {"sop_instance_uid": uid, "box": box, "pixels": pixels}

    truth = {
        "series": [{"key": "sag_t2", "series_uid": "sag"}, {"key": "ax_t2", "series_uid": "ax"}],
        "findings": [
            {"condition": "disc_herniation", "label": 1, "level": "L4-5", "side": "right",
             "key_slices": {"sag_t2": [ks("sag-1", 30, [40, 40, 50, 50]), ks("sag-0", 10, [40, 40, 50, 50])],
                            "ax_t2": [ks("ax-0", 90, [30, 40, 40, 50])]}},
            {"condition": "perineural_cyst", "label": 1, "level": "S2", "side": "left",
             "key_slices": {"ax_t2": [ks("ax-0", 20, [56, 40, 64, 50])]}},
            {"condition": "disc_herniation", "label": 0, "level": "L3-4", "side": "left",
             "key_slices": {"sag_t2": [ks("sag-4", 50, [40, 40, 50, 50])]}},
        ],
    }  # fmt: skip
    got = sorted(side_offsets(feat, truth))  # type: ignore[arg-type]
    # herniation: its sagittal slice with the most pixels (x -4.4), not the larger axial box;
    # the cyst has no sagittal key slice: its axial box (x +10); the absent finding: nothing
    assert [(c, s) for c, s, _ in got] == [("disc_herniation", "right"), ("perineural_cyst", "left")]
    assert [dx for _, _, dx in got] == pytest.approx([-4.4, 10.0])


def test_the_sagittal_box_is_voted_by_the_cells_at_the_best_cells_level():
    # a level head that reads the upper half of a sagittal view as L3-4, the lower half as L4-5
    w = np.zeros((2, 29))
    w[1, 5] = 10.0  # the sagittal box-centre y term of ``level_design``
    agents = SimpleNamespace(levels=["L3-4", "L4-5"], level_w=w, level_b=np.array([0.0, -5.0]))
    feat = SimpleNamespace(study=SimpleNamespace(series=[SimpleNamespace(geometry=SimpleNamespace(size=16),
                                                                         sop_uids=["a"])]))  # fmt: skip
    d = {"views": [(0, 0, 0)], "crops": [(0, 0, 16)]}
    j = CONDITION_KEYS.index("disc_herniation")
    z = np.full((1, 4, 4, len(CONDITION_KEYS)), -9.0)
    z[0, 1, 1, j] = 3.0  # the best cell, in the upper half
    z[0, 2:, 1, j] = 2.8  # cells within the margin, connected to it, running on into the lower half
    keep = _same_level(feat, d, z, 0, j, agents, "disc_herniation")
    assert keep is not None
    assert keep[:2].all()
    assert not keep[2:].any()
    assert _same_level(feat, d, z, 0, j, None, "disc_herniation") is None  # no level head: every cell
    box = _place(feat, d, z, None, None, 0, j, 1.0, keep)  # the cells' outline (no typical size)
    assert list(box) == [4.0, 4.0, 8.0, 8.0]  # one cell, not the column down to the next level
    assert list(_place(feat, d, z, None, None, 0, j, 1.0)) == [4.0, 4.0, 8.0, 16.0]


def test_the_side_is_read_from_every_sagittal_slice_at_the_box():
    """A central lesion seen on three slices whose best one happens to lie beside the midline is
    central by the slice profile; a paracentral one stays on its side."""
    from ml.agents.cell_localization import profile_offset_mm

    series = _study()
    feat = SimpleNamespace(study=SimpleNamespace(series=series))
    d = {"views": [(0, 0, k) for k in range(5)], "crops": [(0, 0, 100)] * 5}
    j = CONDITION_KEYS.index("disc_herniation")
    z = np.full((5, 4, 4, len(CONDITION_KEYS)), -9.0)  # [V, G, G, 17], cells of 25 px
    pre = np.array([30.0, 30.0, 45.0, 45.0])  # the sagittal box on the cell (row 1, column 1)
    z[1:4, 1, 1, j] = [3.0, 2.95, 2.9]  # x -4.4, 0, +4.4: the best slice is right of the midline
    z[2, 3, 3, j] = 9.0  # a stronger cell elsewhere on a slice does not count: only the box's cells
    dx = profile_offset_mm(feat, d, z, 1, j, pre, 0.0, 0.5)  # type: ignore[arg-type]
    assert abs(dx) < 1.0
    best = max(range(5), key=lambda k: z[k, 1, 1, j])
    assert series[0].geometry.positions[best][0] == pytest.approx(-4.4)  # the best slice alone: "right"
    z[1:5, 1, 1, j] = [-9.0, 2.0, 3.0, 2.0]  # paracentral, seen best 4.4 mm left
    assert profile_offset_mm(feat, d, z, 3, j, pre, 0.0, 0.5) == pytest.approx(4.4, abs=0.1)  # type: ignore[arg-type]
    # another tile of the same slices (another window) is not mixed in
    d2 = {"views": d["views"] + [(0, 0, 0)], "crops": d["crops"] + [(0, 50, 50)]}
    z2 = np.concatenate([z, np.full((1, 4, 4, len(CONDITION_KEYS)), 20.0)])
    assert profile_offset_mm(feat, d2, z2, 3, j, pre, 0.0, 0.5) == pytest.approx(4.4, abs=0.1)  # type: ignore[arg-type]
    # a box placed wholly past the tile's far edge reads the edge cells (a held-out study crashed
    # its localization here on an empty slice of cells)
    z[:, 3, 3, j] = [-9.0, 2.0, 3.0, 2.0, -9.0]
    past = np.array([101.0, 102.0, 120.0, 130.0])
    assert profile_offset_mm(feat, d, z, 2, j, past, 0.0, 0.5) == pytest.approx(0.0, abs=0.1)  # type: ignore[arg-type]


def test_the_regressor_is_each_conditions_own_linear_map():
    """``regress`` as one matrix product gives, per condition, that condition's weights applied to
    the standardised cells (what the per-condition ridge fitted), unclipped where in range."""
    rng = np.random.default_rng(3)
    c, f, k = 50, 7, len(CONDITION_KEYS)
    x = rng.normal(size=(c, f)).astype(np.float32)  # [C, F]
    a = {
        "reg_w": rng.normal(scale=0.05, size=(k, f, 4)).astype(np.float32),  # [17, F, 4]
        "reg_b": rng.normal(scale=0.05, size=(k, 4)).astype(np.float32),
        "reg_mean": rng.normal(size=f).astype(np.float32),
        "reg_std": rng.uniform(0.5, 2.0, size=f).astype(np.float32),
    }
    out = regress(a, x)  # [C, 17, 4]
    assert out.shape == (c, k, 4)
    xs = (x - a["reg_mean"]) / a["reg_std"]
    for j in range(k):
        assert np.allclose(out[:, j], xs @ a["reg_w"][j] + a["reg_b"][j], atol=1e-5)


def test_covered_cells_of_many_boxes_are_each_boxs_own():
    from ml.agents.dense_boxes import covered_cells, covered_cells_many

    rng = np.random.default_rng(7)
    g = 16
    boxes = np.concatenate(
        [
            rng.uniform(-2, g + 2, size=(200, 4)),  # [N, 4] partly outside the grid
            [[3.0, 3.0, 3.0, 3.0], [g, g, g + 1, g + 1], [-1, -1, 0, 0], [2.5, 4.0, 2.5, 9.0]],  # degenerate
        ]
    )
    assert covered_cells_many(boxes, g) == [covered_cells(b, g) for b in boxes]
