"""Where the served pipeline's wrong levels come from: a box on the finding read at the wrong
level, or a box elsewhere (the head fired on another disc or vertebra).

    .venv/bin/python benchmarks/level_errors.py --pipeline .cache/pipelines/demo-<key> \\
        --manifest .cache/heldout/heldout-s9301-n300/manifest.jsonl --studies 120

For every condition called present in a study that has it, the call's level is right (a present
finding of that condition at that level), or wrong with its sagittal box within ``--near-mm`` (in
the sagittal plane) of one of the condition's findings ("near": the level was read wrong), or
wrong and farther ("far": the wrong cell fired). For the far disc herniations it also prints
which other present findings the called level holds (the degenerative look-alikes), and per
condition how many wrong levels hold an uncertain (-1) finding of it (a borderline protrusion
the generator labelled neither present nor absent). Only calls
whose first box is sagittal are counted. Scores only; chooses nothing.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", type=Path, required=True)
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--studies", type=int, default=120)
    ap.add_argument("--near-mm", type=float, default=12.0)
    args = ap.parse_args()

    from ml.agents.cell_levels import finding_levels
    from ml.agents.heldout import _truth_index, read_study
    from ml.agents.localization import load_truth
    from ml.agents.pipeline import Pipeline
    from ml.data.dicom_adapter import study_from_datasets
    from ml.data.manifest import read_manifest

    base = args.manifest.parent
    entries = list(read_manifest(args.manifest))[: args.studies]
    pipe = Pipeline.load(args.pipeline, overrides={"report": False})
    counts: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])  # right, near, far
    lookalikes: collections.Counter[str] = collections.Counter()
    far_herniations = with_lookalike = 0
    at_uncertain: collections.Counter[str] = collections.Counter()  # wrong calls at an uncertain finding's level
    degenerative = {"disc_height_loss", "spondylolisthesis", "canal_stenosis"}
    for i in range(0, len(entries), 8):
        chunk = entries[i : i + 8]
        studies = []
        for e in chunk:
            uid, series = read_study(base, e)
            studies.append(study_from_datasets(uid, series, pipe.preprocess, patient_key=e.patient_key)[0])
        for e, st, res in zip(chunk, studies, pipe.analyze_many(studies), strict=True):
            truth = load_truth(base / e.ground_truth) if e.ground_truth else {}
            where = {sop: (s, k) for s in st.series for k, sop in enumerate(s.sop_uids)}
            present = _truth_index(truth or {})
            uncertain: dict[str, set[str]] = collections.defaultdict(set)  # condition -> levels of its -1 findings
            for f in (truth or {}).get("findings", []):
                if f.get("label") == -1:
                    uncertain[f["condition"]] |= finding_levels(f)
            for c in res.conditions:
                findings = present.get(c.condition, [])
                if not c.present or not findings or not c.boxes:
                    continue
                s, k = where.get(c.boxes[0].sop_uid, (None, None))
                if s is None or s.plane != "sagittal" or s.geometry is None:
                    continue
                b = c.boxes[0].xyxy
                at = s.geometry.pixel_to_patient(k, (b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
                dists = []
                for t in findings:
                    for sop, bn in t["slices"].items():
                        s2, k2 = where.get(sop, (None, None))
                        if s2 is None or s2.plane != "sagittal" or at is None:
                            continue
                        g = s2.geometry
                        p = g.pixel_to_patient(k2, (bn[0] + bn[2]) / 2 * g.columns, (bn[1] + bn[3]) / 2 * g.rows)
                        if p is not None:
                            dists.append(float(np.linalg.norm((np.asarray(p) - np.asarray(at))[1:])))  # (y, z)
                right = any(c.level in t["levels"] for t in findings)
                near = bool(dists) and min(dists) < args.near_mm
                counts[c.condition][0 if right else 1 if near else 2] += 1
                if not right and c.level in uncertain.get(c.condition, set()):
                    at_uncertain[c.condition] += 1
                if not right and not near and c.condition == "disc_herniation":
                    far_herniations += 1
                    there = {f["condition"] for f in truth.get("findings", [])
                             if f.get("label") == 1 and f.get("level") == c.level}  # fmt: skip
                    lookalikes.update(there)
                    with_lookalike += bool(there & degenerative)
        print(f"{min(i + 8, len(entries))}/{len(entries)} studies", file=sys.stderr, flush=True)
    total = np.asarray(list(counts.values())).sum(0)
    print(f"{len(entries)} studies, {args.pipeline}")
    print(f"all conditions: right {total[0]}, wrong with the box on a finding {total[1]}, "
          f"wrong with the box elsewhere (> {args.near_mm:g} mm) {total[2]}")  # fmt: skip
    for key, (r, n, f) in sorted(counts.items(), key=lambda kv: -kv[1][2]):
        print(f"  {key:24} right {r:4}  near {n:3}  far {f:3}")
    print(f"wrong levels at a level holding an uncertain (-1) finding of the condition: {dict(at_uncertain)}")
    print(
        f"far disc herniations: {far_herniations}; the called level holds disc height loss, "
        f"spondylolisthesis or canal stenosis in {with_lookalike}; findings there: {dict(lookalikes.most_common())}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
