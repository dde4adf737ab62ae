"""Localization from the dense head's cells on held-out generated studies: what the cell stride,
the box regressor, the axial-slice rule and key-slice negatives do to level, side and box IoU.

Same data and cached trunk cells as ``benchmarks/diagnosis_dense.py`` (separate ``ml synth``
sets: training seeds, test seeds). For each variant the dense head is trained on the training
sets (with their ground truth), a level head and side rules are fitted on the training truth as
``train_localization`` does, and the test studies are localised for the conditions the head
calls present and scored with ``ml.agents.heldout.score`` (the served pipeline's scorer: a box
off the finding's key slices scores 0, beside the mean-box prior on the true slice)::

    nice .venv/bin/python benchmarks/localization_cells.py --train .cache/agents_dense/rtrain \\
        .cache/agents_dense/rtrain2 --test .cache/agents_dense/rtest2 \\
        --variants s32,s32+reg,s16+reg,s16+reg+keyneg,s16+reg+maxz

Variant parts: ``s32`` / ``s16`` the head's cell stride; ``reg`` the box regressor (else the
typical box at the firing cells); ``maxz`` the axial box on the best axial view (else on the
slice through the sagittal box); ``keyneg`` key-slice negatives; ``all`` refit on every training
study after calibration; ``swa`` the weights averaged over the epochs from the 13th; ``k3`` 3
fold heads served as their mean, calibrated out-of-fold; ``seed1`` another training seed. Prints
one line per variant, then its level / side / box IoU per condition. ``--head-cache DIR`` keeps
each variant's trained head in ``DIR/<variant>`` (and loads it when it is there): a localization
experiment then costs seconds, not a head's training. ``bal`` the balanced cell loss
(``dense_cell_loss: balanced``: a finding's box cells weigh as much as the rest of its study);
``--conditions`` prints those conditions' held-out AUROC under each variant's line.
``adapt`` / ``adaptN`` spine adaptation of the trunk (``dense_adapt_blocks``: the last N of its
blocks 14-17, all 4 for ``adapt``) fine-tuned jointly with the head after the head's training on
the frozen cells; ``aeN`` N joint epochs (default 5), ``alrX`` the trunk's learning rate X
(default 1e-4); ``cneg`` complete negatives (``dense_complete_negatives``: the cells away
from every finding of a present condition); ``prof`` / ``profX`` the side from every sagittal
slice's logit at the box (softmax temperature 0.5 / X; localization only, the head is shared
with the variant without it); ``lboth`` the served level rule (the conditions graded on the
axial slice read their level from both planes: ``ml.agents.cell_levels``; without it every
condition reads the sagittal box), ``lsrc-axial`` / ``lsrc-both`` that source for every
condition (localization only);
``lvoteX`` the level from every sagittal cell at once (the soft maximum, temperature X, of
each level's cells: ``voted_level``; an experiment, localization only); ``ctx`` the head's
vertical context (``dense_context``: each cell also reads the hidden features of the cells
above and below it); ``slc`` the slice contrast (``dense_slice_contrast``: each cell's
features also minus their mean over the sagittal slices at the same place); ``mir`` with ``slc``:
an axial cell's contrast against the cell at the mirrored column (``dense_axial_mirror``); ``ensN`` N heads
of consecutive seeds served as their mean (``dense_seeds``). The frozen and the adapted head see
the same training and test studies; the adapted cells come from the cached block-13 cells, so no
view is re-encoded::

    .venv/bin/python benchmarks/localization_cells.py --train .cache/agents_dense/rtrain \
        .cache/agents_dense/rtrain2 --test .cache/agents_dense/rtest2 \
        --variants s16+reg+bal,s16+reg+bal+adapt --head-cache DIR
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import types
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def fitted_localization(feats: list, truths: list):
    """A LocalizationAgents with the level head and side rules only (what the cells path uses),
    fitted on the training truth as ``train_localization`` fits them."""
    from sklearn.linear_model import LogisticRegression

    from ml.agents.levels import level_design
    from ml.agents.localization import LocalizationAgents, LocalizationConfig, truth_slices
    from ml.agents.localization_train import side_offsets, side_rules
    from ml.conditions import CONDITION_KEYS

    lx, ly, sides, offsets = [], [], {}, {}
    for f, t in zip(feats, truths, strict=True):
        for x in (t or {}).get("findings", []):
            if x["label"] == 1:
                sides.setdefault(x["condition"], []).append(x.get("side") or "")
        for cond, side, dx in side_offsets(f, t):
            offsets.setdefault(cond, {}).setdefault(side, []).append(dx)
        for (si, k, cond), item in truth_slices(f, t).items():
            s = f.study.series[si]
            if item["label"] != 1 or s.geometry is None:
                continue
            pre = np.asarray(s.geometry.to_preprocessed(item["box"]), float) / s.geometry.size
            lx.append(level_design(s.plane, k / max(1, len(s.sop_uids) - 1), pre, cond))
            ly.append(item["level"])
    lv = LogisticRegression(C=1.0, max_iter=2000).fit(np.array(lx), ly)
    nc = len(CONDITION_KEYS)
    arrays = {
        "slice_weight": np.zeros((nc, 1)),
        "slice_bias": np.zeros(nc),
        "box_weight": np.zeros((nc, 4, 1)),
        "box_bias": np.zeros((nc, 4)),
        "mean": np.zeros(1),
        "std": np.ones(1),
        "trained": np.zeros(nc),
        "level_weight": lv.coef_,
        "level_bias": lv.intercept_,
    }
    meta = {"levels": [str(c) for c in lv.classes_], "side_rules": side_rules(sides, offsets)}
    return LocalizationAgents(LocalizationConfig(), arrays, meta)


def profile_tau(parts: set[str]) -> float:
    """``prof`` -> 0.5, ``profX`` -> X (the side read from every sagittal slice's logit at the
    box, softmax temperature X: ``cell_localization.profile_offset_mm``), else 0 (the best slice)."""
    for x in parts:
        if x == "prof":
            return 0.5
        if x.startswith("prof"):
            return float(x[4:])
    return 0.0


def vote_tau(parts: set[str]) -> float:
    """``lvoteX`` -> X (the level from every sagittal cell at once, ``voted_level``), else 0."""
    return next((float(x[5:]) for x in parts if x.startswith("lvote")), 0.0)


def voted_level(feat, d: dict, z: np.ndarray, j: int, condition: str, loc, tau: float) -> str:
    """The level whose sagittal cells hold the most evidence for condition ``j``: per level the
    level head reads, the soft maximum tau * logsumexp(z / tau) over all its cells on every
    sagittal view, instead of the level of the single best cell (an experiment, not served)."""
    from ml.agents.cell_levels import view_levels

    g = z.shape[1]
    per_level: dict[int, list[np.ndarray]] = {}
    for v, (plane, _, _) in enumerate(d["views"]):
        if plane != 0:
            continue
        lv = view_levels(feat, d, v, g, loc, condition).ravel()
        zz = z[v, :, :, j].ravel()
        for level in np.unique(lv):
            per_level.setdefault(int(level), []).append(zz[lv == level])
    score = {}
    for level, parts in per_level.items():
        x = np.concatenate(parts)
        score[level] = x.max() + tau * np.log(np.exp((x - x.max()) / tau).sum())
    return str(loc.levels[max(score, key=score.__getitem__)])


def level_sources(parts: set[str]) -> dict[str, str] | None:
    """``lboth``: the served rule (``LocalizationConfig.level_both_planes`` read from both planes,
    ``ml.agents.cell_levels``: None here); ``lsrc-X``: source X for every condition; else the
    sagittal reading for every condition (what every variant measured before the rule)."""
    from ml.conditions import CONDITION_KEYS

    forced = next((x[5:] for x in parts if x.startswith("lsrc-")), None)
    if forced:
        return dict.fromkeys(CONDITION_KEYS, forced)
    return None if "lboth" in parts else {}


def adapt_blocks(parts: set[str]) -> int:
    """``adapt`` -> 4 (blocks 14-17), ``adaptN`` -> N, else 0 (the frozen trunk)."""
    for x in parts:
        if x == "adapt":
            return 4
        if x.startswith("adapt") and x[5:].isdigit():
            return int(x[5:])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, nargs="+", default=[REPO / ".cache/agents_dense/rtrain"])
    ap.add_argument("--test", type=Path, nargs="+", default=[REPO / ".cache/agents_dense/rtest2"])
    ap.add_argument("--variants", default="s32,s32+reg,s16+reg,s16+reg+maxz")
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--head-cache", type=Path, default=None, help="keep/load each variant's trained head here")
    ap.add_argument("--sag-slices", type=int, default=7, help="central sagittal slices the head sees")
    ap.add_argument("--conditions", default="", help="comma-separated conditions whose AUROC is printed per variant")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from diagnosis_dense import load, variant_cfg, with_views

    from ml.agents.cell_localization import localize_from_cells
    from ml.agents.dense_train import train_dense
    from ml.agents.heads import load_diagnosis
    from ml.agents.heldout import score
    from ml.conditions import CONDITION_KEYS

    base = replace(variant_cfg("crop+disc", 256), dense_sag_slices=args.sag_slices)

    def sets(paths: list[Path]) -> tuple[list, list]:
        feats, truths = [], []
        for path in paths:
            f, t, disc = load(path, replace(base, dense_axial="all"))
            feats += with_views(f, disc, base)
            truths += t
        return feats, truths

    train, train_truth = sets(args.train)
    test, test_truth = sets(args.test)
    loc = fitted_localization(train, train_truth)
    print(f"{len(train)} training, {len(test)} test studies")
    for name in args.variants.split(","):
        parts = set(name.split("+"))
        stride = 16 if "s16" in parts else 32
        cfg = replace(base, dense_stride=stride, dense_box_stride=stride, dense_key_negatives="keyneg" in parts,
                      dense_complete_negatives="cneg" in parts,
                      dense_refit_all="all" in parts, dense_average_from=13 if "swa" in parts else 0,
                      dense_folds=next((int(x[1:]) for x in parts if x[:1] == "k" and x[1:].isdigit()), 0),
                      seed=next((int(x[4:]) for x in parts if x[:4] == "seed" and x[4:].isdigit()), 0),
                      dense_cell_loss="balanced" if "bal" in parts else "study",
                      dense_adapt_blocks=adapt_blocks(parts), dense_context="ctx" in parts,
                      dense_slice_contrast="slc" in parts, dense_axial_mirror="mir" in parts,
                      dense_seeds=next((int(x[3:]) for x in parts if x[:3] == "ens" and x[3:].isdigit()), 1),
                      dense_adapt_epochs=next((int(x[2:]) for x in parts if x[:2] == "ae" and x[2:].isdigit()), 5),
                      dense_adapt_lr=next((float(x[3:]) for x in parts if x[:3] == "alr"), 1e-4))  # fmt: skip
        t0 = time.perf_counter()
        local_only = ("prof", "lvote", "lsrc", "lboth")  # localization only: the head is the variant's without them
        head_name = "+".join(x for x in name.split("+") if not x.startswith(local_only))
        cached = args.head_cache / head_name if args.head_cache else None
        if cached is not None and cached.exists():
            agents = load_diagnosis(cached)
        else:
            agents = train_dense(train, cfg, train_truth)
            if cached is not None:
                agents.save(cached)
        seconds = time.perf_counter() - t0
        sources = level_sources(parts)
        rows = []
        for f, t, conds in zip(test, test_truth, agents.predict(test), strict=True):
            z, d, reg = agents.cell_maps(f)
            todo = [c for c in conds if c.present]
            localize_from_cells(f, d, z, todo, loc, box_wh=agents.a["box_wh"], reg=reg if "reg" in parts else None,
                                axial_from_sagittal="maxz" not in parts, side_profile=profile_tau(parts),
                                level_sources=sources)  # fmt: skip
            if vote_tau(parts):
                for c in todo:
                    if c.level:
                        c.level = voted_level(f, d, z, CONDITION_KEYS.index(c.condition), c.condition, loc,
                                              vote_tau(parts))  # fmt: skip
            labels = {k: int(v) for k, v in zip(CONDITION_KEYS, f.study.labels, strict=True)}
            rows.append(
                {
                    "entry": types.SimpleNamespace(labels=labels, patient_key=f.study.patient_key),
                    "analysis": types.SimpleNamespace(conditions=conds),
                    "truth": t or {},
                }
            )
        m = score(rows, bootstrap_n=args.boot)
        loc_m, auc = m["localization"], m["diagnosis"]["mean_auroc"]
        la, sa = loc_m["level_accuracy"], loc_m["side_accuracy"]
        print(
            f"{name:>18}: AUROC {auc[0]:.3f} [{auc[1]:.3f}, {auc[2]:.3f}]  level {la[0]:.3f}  side {sa[0]:.3f}  "
            f"box IoU {loc_m['median_box_iou']:.3f} (prior {loc_m['median_prior_iou']:.3f}, {loc_m['boxes']} boxes)  "
            f"train {seconds:.0f} s (recorded {agents.meta.get('seconds', '-')} s, adaptation "
            f"{agents.meta.get('adapt_seconds', '-')} s)"
        )
        per = m["diagnosis"]["per_condition"]
        print(" " * 20 + "AUROC per condition: " + "  ".join(
            f"{k} {per[k]['auroc'][0]:.3f}" for k in CONDITION_KEYS if per.get(k, {}).get("auroc")))  # fmt: skip
        shown = [k for k in args.conditions.split(",") if k]
        if shown:
            print(" " * 20 + "  ".join(f"{k} {per[k]['auroc'][0]:.3f}" if per[k]["auroc"] else f"{k} -" for k in shown))
        for key, c in loc_m["per_condition"].items():
            if c["n"]:
                f2 = lambda v: "  - " if v is None else f"{v:.2f}"  # noqa: E731
                print(f"{'':>20}{key:<24} n {c['n']:>3}  level {f2(c['level'])}  side {f2(c['side'])}  "
                      f"IoU {f2(c['iou'])}")  # fmt: skip


if __name__ == "__main__":
    main()
