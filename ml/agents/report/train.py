"""Two-stage training of the Medical Report Agent (plus a stage 0 for the from-scratch tiny decoder).

- stage 0 (preset ``tiny`` only): a text-only language model on generated reports with simulated
  agent tokens (``pretrain.py``), standing in for the pre-trained LLM the paper starts from;
  trained once and cached, so both report-agent variants (with / without agent tokens) start from
  the identical decoder. ``init_from`` names another stage-0 folder (tokenizer/ + decoder/).
- stage 1: projector only; the decoder is frozen (LLaVA feature alignment).
- stage 2: projector + LoRA adapters on the decoder (peft). The adapters are trainable: the
  paper's released code froze them, so stage 2 silently trained the projector only.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ml.agents.report.agent import ReportAgent
from ml.agents.report.config import ReportAgentConfig
from ml.agents.report.decoders import load_pretrained_decoder
from ml.agents.report.loss import report_lm_loss
from ml.agents.report.pretrain import ensure_tiny_lm, load_tiny_lm
from ml.agents.report.prompt import writer_text
from ml.agents.report.types import ReportExample
from ml.agents.report.vocab import ReportVocabulary
from ml.progress import ProgressLog

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "agents"
PRESET_CONFIGS = {"tiny": "report.yaml", "gemma-3-270m": "report_gemma.yaml", "llama-3.1-8b": "report_llama8b.yaml"}


def default_config(preset: str) -> ReportAgentConfig:
    if preset not in PRESET_CONFIGS:
        raise ValueError(f"unknown report-agent preset {preset!r}; known: {', '.join(PRESET_CONFIGS)}")
    return ReportAgentConfig.from_yaml(CONFIG_DIR / PRESET_CONFIGS[preset])


def _lr(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def _run(
    name: str,
    steps: int,
    params: list[torch.nn.Parameter],
    lr: float,
    cfg: ReportAgentConfig,
    batch_loss: Callable[[list[int]], torch.Tensor],  # example indices -> the mini-batch's loss
    n: int,
    rng: random.Random,
) -> list[float]:
    """A plain AdamW loop over random mini-batches; logs loss, pace and time left (``ProgressLog``)."""
    if steps <= 0:
        return []
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.train.weight_decay)
    losses: list[float] = []
    progress = ProgressLog(log, f"report {name}", steps, every_steps=cfg.train.log_every)
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = _lr(step, steps, lr, cfg.train.warmup)
        idx = [rng.randrange(n) for _ in range(min(cfg.train.batch_size, n))]
        loss = batch_loss(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        progress.update(step + 1, f"loss {float(np.mean(losses[-cfg.train.log_every :])):.3f}")
    return losses


def train_report_agent(
    examples: list[ReportExample],
    out_dir: Path,
    preset: str = "tiny",
    stage1_steps: int | None = None,
    stage2_steps: int | None = None,
    use_agent_tokens: bool = True,
    stage0_steps: int | None = None,
    config: ReportAgentConfig | None = None,
    overrides: dict[str, Any] | None = None,
    init_from: Path | None = None,
) -> Path:
    """Train a report agent on ``examples`` and save it to ``out_dir`` (returned).

    Steps default to the preset's YAML (``ml/configs/agents/report*.yaml``). ``use_agent_tokens``
    overrides every example's flag (False = plain LLaVA). ``stage0_steps`` sets the tiny LM's
    steps (``tiny_lm.steps``; a new value trains and caches another LM). ``init_from`` uses the
    tokenizer/ + decoder/ of a given folder (a stage-0 LM or another tiny agent) instead.
    """
    if not examples:
        raise ValueError("train_report_agent needs at least one example")
    if any(not e.target.strip() for e in examples):
        raise ValueError("every ReportExample needs a non-empty target report")
    cfg = config or default_config(preset)
    if config is None and overrides:
        cfg = ReportAgentConfig.from_dict(_merge(cfg.to_dict(), overrides))
    cfg.preset = preset if config is None else cfg.preset
    tr = cfg.train
    if stage0_steps is not None:
        cfg.tiny_lm.steps = stage0_steps
    if stage1_steps is not None:
        tr.stage1_steps = stage1_steps
    if stage2_steps is not None:
        tr.stage2_steps = stage2_steps
    dims = {np.asarray(s).shape[-1] for e in examples for s in (*e.t1_slices, *e.t2_slices)}
    if len(dims) != 1:
        raise ValueError(f"all slice features must share one width, got {sorted(dims)}")
    cfg.projector.slice_dim = dims.pop()
    if cfg.vocab not in ("full", "report"):
        raise ValueError(f"vocab must be 'full' or 'report', got {cfg.vocab!r}")
    examples = [dataclasses.replace(e, use_agent_tokens=use_agent_tokens) for e in examples]

    torch.manual_seed(tr.seed)
    rng = random.Random(tr.seed)
    torch.set_num_threads(tr.threads)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    if cfg.preset == "tiny":
        # stage 0: the text-only language model that stands in for a pre-trained LLM (cached)
        t0 = time.perf_counter()
        base = Path(init_from) if init_from is not None else ensure_tiny_lm(cfg)
        decoder, tok = load_tiny_lm(base)
        timings["stage0"] = time.perf_counter() - t0
    else:
        decoder, tok = load_pretrained_decoder(cfg)
        base = None
    vocab = None
    if cfg.vocab == "report" and cfg.preset != "tiny":
        t0 = time.perf_counter()
        vocab = report_vocabulary(cfg, tok, examples)
        timings["vocab"] = time.perf_counter() - t0
        log.info("report vocabulary: %d of %d tokens", len(vocab), len(tok))
    agent = ReportAgent(cfg, decoder, tok, vocab)
    losses: dict[str, list[float]] = {}

    def vl_loss(idx: list[int]) -> torch.Tensor:
        batch = [examples[i] for i in idx]
        embeds, mask, lab = agent.build_batch(batch, [e.target for e in batch])
        return report_lm_loss(agent(embeds, mask), lab)

    agent.train()
    for stage, steps, lr in ((1, tr.stage1_steps, tr.lr_stage1), (2, tr.stage2_steps, tr.lr_stage2)):
        if steps <= 0:
            continue  # e.g. a stage-0-only base folder: no (untrained) adapters are added
        agent.set_stage(stage)
        params = [p for p in agent.parameters() if p.requires_grad]
        t0 = time.perf_counter()
        losses[f"stage{stage}"] = _run(f"stage{stage}", steps, params, lr, cfg, vl_loss, len(examples), rng)
        timings[f"stage{stage}"] = time.perf_counter() - t0

    timings["total"] = time.perf_counter() - t_start
    agent.meta.update(
        n_examples=len(examples),
        use_agent_tokens=use_agent_tokens,
        init_from=str(base) if base else None,
        seconds=timings,
        final_loss={k: float(np.mean(v[-10:])) for k, v in losses.items() if v},
        losses={k: [round(x, 4) for x in v] for k, v in losses.items()},
    )
    out_dir = Path(out_dir)
    agent.save(out_dir)
    log.info("report agent saved to %s (%.1f s)", out_dir, timings["total"])
    return out_dir


def report_vocabulary(cfg: ReportAgentConfig, tokenizer: Any, examples: list[ReportExample]) -> ReportVocabulary:
    """The tokens a pretrained writer may emit: those of the training targets (the site's own
    reports), of ``cfg.vocab_corpus`` generated reports of every region (the structured wording
    the corpus shares with the template), the end marker, and bos / eos / pad."""
    from ml.data.synthetic.report_corpus import REGION_SPECS, iter_report_samples

    texts = [writer_text(e.target) + "\n" + cfg.end_marker for e in examples]
    corpus = iter_report_samples(cfg.vocab_corpus, seed=cfg.train.seed, regions=tuple(REGION_SPECS))
    texts += [writer_text(s.report) for s in corpus]
    special = (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    return ReportVocabulary.build(tokenizer, texts, special)


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node[p] = dict(node[p])
            node = node[p]
        node[leaf] = value
    return out
