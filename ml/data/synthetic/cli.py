"""``python -m ml synth``: generate a synthetic dataset (DICOM + truth + manifest).

Example::

    python -m ml synth --studies 8 --seed 0 --out var/synth-demo
    python -m ml synth --studies 200 --seed 1 --out var/bench --vendors GE,Siemens --cohort elderly --workers 2
    python -m ml synth --studies 8 --seed 0 --out var/synth-demo --with-priors 0.25
    python -m ml synth --contact-sheet docs/images
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ml.data.manifest import StudyEntry, write_manifest
from ml.data.synthetic.findings import COHORTS
from ml.data.synthetic.physics import DEFAULT_SERIES, SERIES_KEYS
from ml.data.synthetic.priors import prior_plan
from ml.data.synthetic.regions import REGION_SPECS
from ml.data.synthetic.study import StudyConfig, generate_study
from ml.data.synthetic.vendors import VENDORS


def _one(args: tuple[StudyConfig, str, float]) -> list[StudyEntry]:
    """The study's manifest entry, followed by its prior's when the patient has one."""
    cfg, out, with_priors = args
    study = generate_study(cfg, Path(out), prior=prior_plan(cfg.seed, cfg.index, with_priors))
    return [study.entry] + ([study.prior.entry] if study.prior is not None else [])


def configs(
    n: int,
    seed: int,
    region: str = "lumbar",
    vendors: tuple[str, ...] = tuple(VENDORS),
    cohort: str = "general",
    series: tuple[str, ...] = DEFAULT_SERIES,
    fast: bool = False,
    matrix_scale: float = 1.0,
    prevalence: str = "realistic",
    force: tuple[str, ...] = (),
    id_prefix: str = "SYN",
    start: int = 0,
) -> list[StudyConfig]:
    """One config per study; vendors rotate so every profile is equally represented."""
    return [
        StudyConfig(
            seed=seed,
            index=i,
            region=region,
            vendor=vendors[i % len(vendors)],
            cohort=cohort,
            series=series,
            fast=fast,
            matrix_scale=matrix_scale,
            prevalence=prevalence,
            force=force,
            id_prefix=id_prefix,
        )
        for i in range(start, start + n)
    ]


def generate_dataset(
    out: Path, cfgs: list[StudyConfig], workers: int = 1, with_priors: float = 0.0
) -> list[StudyEntry]:
    """Generate studies (in parallel if workers > 1) and write ``out/manifest.jsonl``.

    ``with_priors``: the share of patients who also get an earlier study (``priors``); its entry
    follows the current one's, with the same patient_key (patient-level splits keep them together).
    """
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    jobs = [(c, str(out), with_priors) for c in cfgs]
    bar = {"total": len(jobs), "desc": "generate studies", "unit": "study", "leave": False}
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            entries = [e for pair in tqdm(ex.map(_one, jobs, chunksize=1), **bar) for e in pair]
    else:
        entries = [e for j in tqdm(jobs, **bar) for e in _one(j)]
    write_manifest(out / "manifest.jsonl", entries)
    return entries


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ml synth", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--studies", type=int, default=8, help="number of studies (default 8)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed; same seed = identical bytes")
    p.add_argument("--out", type=Path, help="output folder (manifest.jsonl + studies/)")
    p.add_argument("--region", choices=sorted(REGION_SPECS), default="lumbar")
    p.add_argument("--vendors", default=",".join(VENDORS), help=f"comma list of {', '.join(VENDORS)} (rotated)")
    p.add_argument(
        "--cohort",
        choices=COHORTS,
        default="general",
        help="population: general, elderly (more degeneration), rsna (lumbar, RSNA grades)",
    )
    p.add_argument("--series", default=",".join(DEFAULT_SERIES), help=f"comma list of {', '.join(SERIES_KEYS)}")
    p.add_argument(
        "--prevalence",
        choices=("realistic", "enriched"),
        default="realistic",
        help="enriched: every condition >= ~15%%",
    )
    p.add_argument("--force", default="", help="comma list of condition keys every study must show")
    p.add_argument("--matrix-scale", type=float, default=1.0, help="scale the vendors' matrices (e.g. 0.75)")
    p.add_argument("--fast", action="store_true", help="tiny studies for tests (128/96 matrices, coarse voxels)")
    p.add_argument("--workers", type=int, default=1, help="processes (the CI machine has 2 cores)")
    p.add_argument("--id-prefix", default="SYN", help="PatientID prefix (keep datasets distinct in one PACS)")
    p.add_argument("--start", type=int, default=0, help="index of the first study (extend a dataset)")
    p.add_argument(
        "--with-priors",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="share of patients who also get a study 2-5 years earlier, unchanged or progressed (default 0)",
    )
    p.add_argument(
        "--contact-sheet",
        type=Path,
        metavar="DIR",
        help="write the contact sheet and condition gallery PNGs into DIR and exit",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.contact_sheet:
        from ml.data.synthetic.contact_sheet import write_all

        for path in write_all(args.contact_sheet, seed=args.seed, region=args.region):
            print(path)
        return 0
    if args.out is None:
        build_parser().error("--out is required")
    region = args.region
    cohort = args.cohort
    if cohort == "rsna" and region != "lumbar":
        build_parser().error("the rsna cohort is lumbar only")
    vendors = tuple(v.strip() for v in args.vendors.split(",") if v.strip())
    unknown = [v for v in vendors if v not in VENDORS]
    if unknown:
        build_parser().error(f"unknown vendors {unknown}; known: {', '.join(VENDORS)}")
    series = tuple(s.strip() for s in args.series.split(",") if s.strip())
    force = tuple(s.strip() for s in args.force.split(",") if s.strip())
    cfgs = configs(
        args.studies,
        args.seed,
        region,
        vendors,
        cohort,
        series,
        args.fast,
        args.matrix_scale,
        args.prevalence,
        force,
        args.id_prefix,
        args.start,
    )
    t0 = time.perf_counter()
    if not 0.0 <= args.with_priors <= 1.0:
        build_parser().error("--with-priors is a fraction between 0 and 1")
    entries = generate_dataset(args.out, cfgs, args.workers, args.with_priors)
    dt = time.perf_counter() - t0
    print(
        f"wrote {len(entries)} studies to {args.out} in {dt:.1f} s"
        f" ({60 * len(entries) / max(dt, 1e-9):.1f} studies/min)"
    )
    return 0
