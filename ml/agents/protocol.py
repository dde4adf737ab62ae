"""One protocol for every agent family, and the registry the pipeline loads them from.

Why: the pipeline should not need a loader and a runner per family. Every family (diagnosis,
localization, retrieval, report) answers the same few questions, so ``ml.agents.pipeline`` loads
each component of ``pipeline.json`` through ``FAMILIES`` and runs each loaded family through
``run``, in the registry's order, inside one guard (an exception becomes ``AgentRun(ok=False)``).

What a family is (``AgentFamily``)::

    name       # the family, and its key in pipeline.json's "components" and in PipelineConfig
    version    # what the review app records next to every draft
    per_study  # run one study at a time (its failure is that study's only; its time is per study)
    save(folder) -> version
    load(folder) -> family               (a classmethod)
    run(results, feats, context)         # fill the family's part of each StudyAnalysis

``run`` is pre -> infer -> post for the family: its inputs are the SpineFM features of the studies
and what the earlier families wrote into the ``StudyAnalysis`` (diagnosis writes ``conditions``,
localization their key slices, boxes, levels and sides, retrieval ``similar_cases``, report the
draft); ``context`` carries the pipeline's config and the other loaded families (localization
reads the diagnosis head: a dense head's cells say where its findings are).

The registry maps a family name to how a folder of it is loaded. The imports are deferred: the
review app imports the pipeline, and a family's module may pull in torch or transformers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ml.agents.analysis import StudyAnalysis
from ml.agents.features import StudyFeatures

if TYPE_CHECKING:
    from ml.agents.pipeline import PipelineConfig


@dataclass
class RunContext:
    """What a family's ``run`` may read besides the studies: the pipeline's config and the other
    loaded families by name (None or absent: not loaded)."""

    cfg: PipelineConfig
    agents: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class AgentFamily(Protocol):
    """An agent family as the pipeline sees it (module docstring)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def per_study(self) -> bool: ...

    def save(self, folder: str | Path) -> str: ...

    @classmethod
    def load(cls, folder: str | Path) -> AgentFamily: ...

    def run(self, results: list[StudyAnalysis], feats: list[StudyFeatures], context: RunContext) -> None: ...


def _diagnosis(folder: Path) -> AgentFamily:
    from ml.agents.heads import load_diagnosis  # the head (linear, mil, dense) is in the artifact's config

    return load_diagnosis(folder)


def _localization(folder: Path) -> AgentFamily:
    from ml.agents.localization import LocalizationAgents

    return LocalizationAgents.load(folder)


def _retrieval(folder: Path) -> AgentFamily:
    from ml.agents.retrieval import RetrievalIndex

    return RetrievalIndex.load(folder)


def _report(folder: Path) -> AgentFamily:
    from ml.agents.report.agent import ReportAgent

    return ReportAgent.load(folder)


# name -> how a folder of that family is loaded, in the order the pipeline runs them (each family
# reads what the ones before it wrote)
FAMILIES: dict[str, Callable[[Path], AgentFamily]] = {
    "diagnosis": _diagnosis,
    "localization": _localization,
    "retrieval": _retrieval,
    "report": _report,
}


__all__ = ["FAMILIES", "AgentFamily", "RunContext"]
