"""Dense diagnosis head (``diagnosis.head: dense``) on held-out generated studies, against the
same frozen ImageNet MobileNetV2 with a global-average-pooled linear probe (the documented
baseline) and against the dense head without box supervision.

Train and test sets are separate ``ml synth`` datasets (different seeds, so disjoint patients)::

    python -m ml synth --studies 120 --seed 7101 --prevalence enriched --id-prefix DTR --fast \\
        --series sag_t1,sag_t2,sag_stir,ax_t2 --out .cache/agents_dense/train --workers 2
    python -m ml synth --studies 60 --seed 7102 --prevalence enriched --id-prefix DTE --fast \\
        --series sag_t1,sag_t2,sag_stir,ax_t2 --out .cache/agents_dense/test --workers 2
    nice -n 10 .venv/bin/python benchmarks/diagnosis_dense.py \\
        --train .cache/agents_dense/train --test .cache/agents_dense/test

Trunk cells are cached next to each dataset (``dense_cells_<size>.pkl``); AUROC per condition
with patient-bootstrap 95 % CIs; JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def load(data: Path, size: int, cfg) -> tuple[list, list]:
    """StudyFeatures with the dense cells (cached) and no SpineFM embedding; ground truths."""
    import torch

    from ml.agents.dense import dense_cells, load_trunk
    from ml.agents.features import StudyFeatures
    from ml.agents.localization import load_truth
    from ml.data.loader import StudyLoader, load_manifest
    from ml.data.preprocess import PreprocessConfig

    torch.set_num_threads(1)  # on the shared 2 cores one thread is 2-3x faster than two (oversubscription)
    entries, base = load_manifest(data / "manifest.jsonl")
    cache = data / f"dense_cells_v2_{size}_{cfg.dense_sag_slices}_{cfg.dense_max_axial}.pkl"
    cells = pickle.loads(cache.read_bytes()) if cache.exists() else {}
    loader = StudyLoader(base, PreprocessConfig(size=size))
    trunk = None
    feats, truths = [], []
    t0 = time.perf_counter()
    for e in entries:
        st = loader.load(e, geometry=True)
        f = StudyFeatures(st, None)  # type: ignore[arg-type]
        if e.study_uid in cells:
            f.extras["dense"] = cells[e.study_uid]
        else:
            trunk = trunk or load_trunk()
            cells[e.study_uid] = dense_cells(f, cfg, trunk)
        for s in st.series:
            s.pixels = s.pixels[:0]
        feats.append(f)
        truths.append(load_truth(base / e.ground_truth) if e.ground_truth else None)
    if trunk is not None:
        cache.write_bytes(pickle.dumps(cells))
    logging.info("%s: %d studies in %.0f s", data, len(feats), time.perf_counter() - t0)
    return feats, truths


def table(y: np.ndarray, p: np.ndarray, keys: list[str], n_boot: int) -> dict:
    from ml.agents.evaluate import condition_table

    t = condition_table(y, p, keys, n_boot)
    mean = float(np.nanmean([v["auroc"] for v in t.values()]))
    return {"mean_auroc": mean, "per_condition": t}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, default=REPO / ".cache/agents_dense/train")
    ap.add_argument("--test", type=Path, default=REPO / ".cache/agents_dense/test")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=REPO / ".cache/agents_dense/metrics.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from ml.agents.diagnosis import DiagnosisConfig, fit_probes, labels_matrix, train_diagnosis
    from ml.conditions import CONDITION_KEYS

    cfg = DiagnosisConfig(head="dense", dense_size=args.size)
    tr, tr_truth = load(args.train, args.size, cfg)
    te, _ = load(args.test, args.size, cfg)
    if {f.study.patient_key for f in tr} & {f.study.patient_key for f in te}:
        raise SystemExit("train and test share patients: use different --id-prefix / seeds")
    y_te = labels_matrix(te)
    keys = [f.study.patient_key for f in te]
    out: dict = {"train": str(args.train), "test": str(args.test), "n_train": len(tr), "n_test": len(te)}
    rows = {}
    variants = (
        ("dense s32 + boxes", cfg, tr_truth),
        ("dense s32, labels only", DiagnosisConfig(head="dense", dense_size=args.size, dense_box_weight=0.0), None),
        ("dense s16 + boxes", DiagnosisConfig(head="dense", dense_size=args.size, dense_stride=16), tr_truth),
    )
    for name, c, truths in variants:
        t0 = time.perf_counter()
        agents = train_diagnosis(tr, c, truths)
        rows[name] = table(y_te, agents.probabilities(te), keys, args.boot)
        rows[name]["train_seconds"] = round(time.perf_counter() - t0, 1)
        rows[name]["box_cells_studies"] = agents.meta.get("boxes")
        logging.info("%s: mean AUROC %.3f", name, rows[name]["mean_auroc"])

    def pooled(fs: list) -> np.ndarray:  # global-average-pooled trunk cells, mean per plane
        out = []
        for f in fs:
            d = f.extras["dense"]
            v = d["cells"].astype(np.float32).mean((1, 2))
            planes = [v[[i for i, m in enumerate(d["views"]) if m[0] == p]] for p in (0, 1)]
            out.append(np.concatenate([x.mean(0) if len(x) else np.zeros(v.shape[1]) for x in planes]))
        return np.stack(out)

    probe = fit_probes(pooled(tr), labels_matrix(tr), [f.study.patient_key for f in tr], DiagnosisConfig())
    xs = (pooled(te) - probe.mean) / probe.std
    rows["linear probe, pooled cells"] = table(y_te, probe.infer(xs), keys, args.boot)
    out["rows"] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, default=float))
    names = list(rows)
    print(f"{'condition':<24}" + "".join(f"{n[:22]:>24}" for n in names))
    for k in CONDITION_KEYS:
        cells = []
        for n in names:
            v = rows[n]["per_condition"][k]
            cells.append(f"{v['auroc']:.2f} [{v['auroc_ci'][0]:.2f},{v['auroc_ci'][1]:.2f}]")
        print(f"{k:<24}" + "".join(f"{c:>24}" for c in cells))
    print(f"{'mean':<24}" + "".join(f"{rows[n]['mean_auroc']:>24.3f}" for n in names))


if __name__ == "__main__":
    main()
