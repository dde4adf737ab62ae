"""Report texts with their ground-truth labels, without rendering any image.

Rendering a study takes seconds; drawing a patient and writing its report takes about a
millisecond. The tiny report decoder needs far more report text than we can afford images for
(it stands in for a pre-trained LLM, which has read a great deal of text), so its language
pretraining draws from here. The texts come from the same findings sampler and report writer as
the rendered studies (``study.generate_study``), so their language and label semantics match;
seeds are kept apart from the rendered datasets by a distinct seed sequence tag.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ml.data.synthetic.findings import COHORTS, sample_patient
from ml.data.synthetic.physics import DEFAULT_SERIES
from ml.data.synthetic.regions import REGION_SPECS
from ml.data.synthetic.report import write_report
from ml.data.synthetic.study_labels import labels_from_findings
from ml.data.synthetic.vendors import VENDORS

_TAG = 0x7E47  # separates these seed streams from generate_study's (seed, index) streams


@dataclass(frozen=True)
class ReportSample:
    region: str
    labels: dict[str, int]  # condition key -> 1 / 0 / -1 (as in a rendered study's ground truth)
    report: str
    # condition key -> [(level, side or "")] of its present or uncertain findings, report order:
    # what a localization agent would point at (the report agent's <localization> tokens)
    sites: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


def iter_report_samples(
    n: int,
    seed: int = 0,
    regions: tuple[str, ...] = ("lumbar",),
    prevalence: str = "enriched",
    cohorts: tuple[str, ...] = ("general", "elderly"),
) -> Iterator[ReportSample]:
    """``n`` reports with labels; region, cohort and vendor (series names) drawn per sample."""
    for r in regions:
        if r not in REGION_SPECS:
            raise ValueError(f"unknown region {r!r}; known: {', '.join(REGION_SPECS)}")
    for c in cohorts:
        if c not in COHORTS:
            raise ValueError(f"unknown cohort {c!r}; known: {', '.join(COHORTS)}")
    vendors = list(VENDORS.values())
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([_TAG, seed, i]))
        region = regions[int(rng.integers(len(regions)))]
        cohort = cohorts[int(rng.integers(len(cohorts)))]
        ven = vendors[int(rng.integers(len(vendors)))]
        patient = sample_patient(rng, region, cohort, prevalence)
        levels = REGION_SPECS[region].levels()
        desc = [ven.descriptions[k] for k in DEFAULT_SERIES]
        report = write_report(rng, patient, region, levels, desc, bool(rng.random() < 0.3))
        sites: dict[str, list[tuple[str, str]]] = {}
        for f in patient.findings:
            if f.label != 0:
                sites.setdefault(f.condition, []).append((f.level, f.side or ""))
        yield ReportSample(region, labels_from_findings(patient.findings), report, sites)
