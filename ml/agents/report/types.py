"""Inputs and outputs of the Medical Report Agent (plain dataclasses; no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ml.agents.analysis import ConditionResult


@dataclass
class ReportInputs:
    """What the agent sees for one study.

    ``t1_slices`` / ``t2_slices``: one array per T1 / T2 series, each ``[S, D]`` slice features
    (``ml.spinefm.embed.SeriesEmbedding.slices``; D = the SpineFM encoder width). ``conditions``
    are the diagnosis + localization agents' outputs; ``similar_report`` the top retrieved prior
    report. ``use_agent_tokens=False`` drops the classification / localization / similar-case
    blocks from the prompt (the plain-LLaVA baseline); the report template is kept either way.
    """

    t1_slices: list[np.ndarray]
    t2_slices: list[np.ndarray]
    conditions: list[ConditionResult] = field(default_factory=list)
    similar_report: str | None = None
    region: str = "lumbar"
    use_agent_tokens: bool = True


@dataclass
class ReportExample(ReportInputs):
    """A training example: the inputs plus the expert report to imitate."""

    target: str = ""


@dataclass
class GeneratedReport:
    text: str  # the draft, without the end-of-report marker
    sections: dict[str, str]  # section title (as written, e.g. "IMPRESSION") -> body
    tokens: int  # new tokens generated (including the stop token when one was hit)
    seconds: float
