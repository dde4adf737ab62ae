"""The Medical Report Agent (LLaVA-style) and its training.

Interface used by the pipeline (``ml.agents.pipeline``)::

    from ml.agents.report import ReportAgent, ReportInputs, ReportExample, train_report_agent

    folder = train_report_agent(examples, out_dir, preset="tiny", stage1_steps=20, stage2_steps=40)
    agent = ReportAgent.load(folder)
    draft = agent.generate(ReportInputs(t1_slices=[s1], t2_slices=[s2], conditions=conds,
                                        similar_report=prior_text, region="lumbar"),
                           max_new_tokens=400)
    draft.text, draft.sections, draft.tokens, draft.seconds

Architecture: slice features of the T1 and T2 series -> attention-pooling projector (64 learned
queries) -> MLP -> 64 image tokens given to the decoder as ``inputs_embeds``, followed by a text
prompt with the other agents' outputs as structured tokens (``<classification>``,
``<localization>``, ``<similar_case_report>``) and the expert report template. See
docs/report-agent.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ml.agents.report.types import GeneratedReport, ReportExample, ReportInputs

if TYPE_CHECKING:  # torch-heavy modules load on first use
    from ml.agents.report.agent import ReportAgent
    from ml.agents.report.config import ReportAgentConfig
    from ml.agents.report.train import train_report_agent

_LAZY = {
    "ReportAgent": "ml.agents.report.agent",
    "ReportAgentConfig": "ml.agents.report.config",
    "train_report_agent": "ml.agents.report.train",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


__all__ = [
    "GeneratedReport",
    "ReportAgent",
    "ReportAgentConfig",
    "ReportExample",
    "ReportInputs",
    "train_report_agent",
]
