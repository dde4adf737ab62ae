"""Stage 0 of the ``tiny`` preset: a small language model that can read the agents' tokens.

The paper starts from a pre-trained LLM that already knows what "canal_stenosis=yes 0.9" means
and how a radiologist writes it down. Our from-scratch ``tiny`` decoder knows nothing, and the
171 image-bearing training studies of a CPU run are far too few to teach it both the report
language and the mapping from agent tokens to findings (measured: with 100 LoRA steps on those
studies alone it ignored even ground-truth tokens; docs/report-agent.md). So stage 0 trains it
on text only, as an instruction-tuned LLM would have been trained:

- report texts from the generator's findings sampler and report writer
  (``ml.data.synthetic.report_corpus``, ~0.4 ms per report, no image rendered), each with
- a text prompt in exactly the layout the report agent uses (``prompt.prompt_parts``), where the
  classification tokens are *simulated agents*: per condition a score with a random
  discriminability d' ~ U(0, ``max_dprime``) and the exact Bayes posterior as the calibrated
  probability. Some prompts therefore say the truth with certainty and others say nothing
  useful, so the decoder learns to follow the probabilities as far as they deserve.
- Half of the prompts carry no agent tokens (the plain-LLaVA layout), so the decoder is equally
  at home in both variants and the comparison of agent tokens vs none stays fair.

No image tokens appear in stage 0 (``<image>`` is directly followed by ``</image>``); stage 1
then learns to put the projector's 64 tokens in between. The result is cached by a hash of
everything that determines it (``ensure_tiny_lm``), like the Gemma conversion.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ml.agents.analysis import ConditionResult
from ml.agents.report.config import ReportAgentConfig
from ml.agents.report.decoders import build_tiny_decoder, cache_root, train_tokenizer
from ml.agents.report.loss import IGNORE, report_lm_loss
from ml.agents.report.prompt import prompt_parts, writer_text
from ml.conditions import CONDITION_KEYS
from ml.data.synthetic.report_corpus import ReportSample, iter_report_samples
from ml.progress import ProgressLog

log = logging.getLogger(__name__)

# bump when the corpus, the simulation, the prompt layout or the loop changes meaning
# 2: names, likely first; 3: IMPRESSION x4; 4: levels, impression order; 5: condition tags;
# 6: the writer's part of each report only (prompt.writer_text)
CODE_VERSION = "tiny-lm/6"


# ----- simulated agents ----------------------------------------------------------------------
def simulated_conditions(
    labels: dict[str, int],
    prevalence: dict[str, float],
    rng: np.random.Generator,
    max_dprime: float,
    exact: bool = False,
    sites: dict[str, list[tuple[str, str]]] | None = None,
    site_pool: dict[str, list[tuple[str, str]]] | None = None,
) -> list[ConditionResult]:
    """Calibrated probabilities of imaginary diagnosis agents of random quality, one per condition.

    Score s ~ N(+d'/2, 1) for a present condition and N(-d'/2, 1) otherwise; the posterior
    P(present | s) = sigmoid(d' * s + logit(prevalence)) is exactly calibrated, and "present" is
    called at probability >= prevalence (close to Youden's point for such scores). Uncertain
    truth (-1) is drawn as present or absent with equal odds: the agents are as unsure as the reader.
    ``exact`` gives perfect agents (probability 1.0 / 0.0): the clearest lesson in copying the tokens.

    With ``sites`` (the sample's true (level, side) per condition) a condition called present also
    gets a level, as the localization agents give it in the app: one of its true sites, or for a
    false call a site drawn from ``site_pool`` (sites of that condition anywhere in the corpus).
    Stage 0 thus sees the same blocks as the app (tiny-lm/3 and earlier had an empty
    localization block), and a finding's level in DISCS is stated rather than guessed.
    """
    out = []
    for key in CONDITION_KEYS:
        y = labels.get(key, 0)
        pos = y == 1 or (y == -1 and rng.random() < 0.5)
        if exact:
            c = ConditionResult(condition=key, probability=float(pos), present=pos, threshold=0.5)
        else:
            d = float(rng.uniform(0.0, max_dprime))
            s = rng.normal(d / 2 if pos else -d / 2, 1.0)
            pi = min(max(prevalence.get(key, 0.5), 1e-3), 1 - 1e-3)
            p = 1.0 / (1.0 + math.exp(-(d * s + math.log(pi / (1 - pi)))))
            c = ConditionResult(condition=key, probability=p, present=p >= pi, threshold=pi)
        if c.present and sites is not None:
            cand = sites.get(key) if pos else None
            cand = cand or (site_pool or {}).get(key)
            if cand:
                c.level, c.side = cand[int(rng.integers(len(cand)))]
        out.append(c)
    return out


def site_pool(samples: list[ReportSample]) -> dict[str, list[tuple[str, str]]]:
    """Every (level, side) at which each condition occurs in the corpus: where false calls point."""
    pool: dict[str, list[tuple[str, str]]] = {}
    for smp in samples:
        for key, where in smp.sites.items():
            pool.setdefault(key, []).extend(where)
    return pool


def corpus_prevalence(samples: list[ReportSample]) -> dict[str, float]:
    return {k: float(np.mean([s.labels.get(k, 0) == 1 for s in samples])) for k in CONDITION_KEYS}


# ----- one training sequence -----------------------------------------------------------------
def _similar(samples: list[ReportSample], i: int, rng: np.random.Generator, pool: int = 8) -> str:
    """A moderately good retriever: of ``pool`` random other reports, the one whose labels agree most."""
    cand = [int(j) for j in rng.integers(0, len(samples), pool) if int(j) != i] or [(i + 1) % len(samples)]
    me = samples[i].labels
    best = max(cand, key=lambda j: sum(me.get(k) == samples[j].labels.get(k) for k in CONDITION_KEYS))
    return samples[best].report


def text_sequence(
    tok: PreTrainedTokenizerBase,
    cfg: ReportAgentConfig,
    sample: ReportSample,
    conditions: list[ConditionResult],
    similar: str | None,
    use_agent_tokens: bool,
    impression_weight: float = 1.0,
) -> tuple[list[int], list[int], list[float]]:
    """(input ids, labels, loss weights) of one prompt + report, in the report agent's layout
    without image tokens. The IMPRESSION's tokens weigh ``impression_weight``: that is where the
    findings are listed, and without the weight they are a small part of a report's loss."""

    def ids(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    pre = ([tok.bos_token_id] if tok.bos_token_id is not None else []) + ids("<image>")
    head, sim, tail = prompt_parts(conditions, similar, sample.region, use_agent_tokens)
    h, t = ids(head), ids(tail)
    room = cfg.max_prompt_tokens - cfg.projector.n_queries - len(pre) - len(h) - len(t)
    s = ids(sim)[: max(room, 0)] if sim else []
    prompt = pre + h + s + t
    text = writer_text(sample.report) + "\n" + cfg.end_marker
    cut = text.find("\nIMPRESSION:")
    body, imp = (text[: cut + 1], text[cut + 1 :]) if cut >= 0 else (text, "")
    first = ids(body)
    target = (first + (ids(imp) if imp else []))[: cfg.max_target_tokens]
    if tok.eos_token_id is not None:
        target.append(tok.eos_token_id)
    weights = [0.0] * len(prompt) + [1.0 if i < len(first) else impression_weight for i in range(len(target))]
    return prompt + target, [IGNORE] * len(prompt) + target, weights


# ----- training --------------------------------------------------------------------------------
def pretrain_tiny_lm(cfg: ReportAgentConfig, out_dir: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Train the BPE tokenizer and the tiny decoder on simulated prompts + reports; save to ``out_dir``."""
    lm = cfg.tiny_lm
    t_start = time.perf_counter()
    torch.manual_seed(lm.seed)
    rng = np.random.default_rng(lm.seed)
    pick = random.Random(lm.seed)
    samples = list(iter_report_samples(lm.n_texts, seed=lm.seed, regions=tuple(lm.regions)))
    prev = corpus_prevalence(samples)
    pool = site_pool(samples)
    log.info("tiny LM: %d reports drawn (%.1f s)", len(samples), time.perf_counter() - t_start)

    corpus = [writer_text(s.report) for s in samples[: lm.tokenizer_texts]]
    for s in samples[: lm.tokenizer_texts // 4]:
        conds = simulated_conditions(s.labels, prev, rng, lm.max_dprime, sites=s.sites, site_pool=pool)
        corpus.append("".join(prompt_parts(conds, None, s.region, True)))
    tok = train_tokenizer(corpus, cfg.tiny.vocab_size, cfg.end_marker)
    decoder = build_tiny_decoder(cfg, tok)
    decoder.train()

    def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """input ids, attention mask, labels and loss weights of one random mini-batch, each [B, T]."""
        rows = []
        for _ in range(lm.batch_size):
            i = pick.randrange(len(samples))
            agent = pick.random() < lm.p_agent_tokens
            exact = pick.random() < lm.p_exact
            smp = samples[i]
            conds = simulated_conditions(smp.labels, prev, rng, lm.max_dprime, exact, smp.sites, pool) if agent else []
            sim = _similar(samples, i, rng) if agent else None
            rows.append(text_sequence(tok, cfg, samples[i], conds, sim, agent, lm.impression_weight))
        t = max(len(r[0]) for r in rows)
        ids = torch.full((len(rows), t), tok.pad_token_id, dtype=torch.long)  # [B, T]
        lab = torch.full((len(rows), t), IGNORE, dtype=torch.long)  # [B, T]
        wts = torch.zeros((len(rows), t))  # [B, T]
        att = torch.zeros((len(rows), t), dtype=torch.long)  # [B, T]
        for r, (x, y, w) in enumerate(rows):
            ids[r, : len(x)] = torch.tensor(x)
            lab[r, : len(y)] = torch.tensor(y)
            wts[r, : len(w)] = torch.tensor(w)
            att[r, : len(x)] = 1
        return ids, att, lab, wts

    opt = torch.optim.AdamW(decoder.parameters(), lr=lm.lr, weight_decay=0.0)
    losses: list[float] = []
    progress = ProgressLog(log, "tiny LM", lm.steps, every_steps=lm.log_every)
    for step in range(lm.steps):
        lr = lm.lr * min(1.0, (step + 1) / lm.warmup)
        lr *= 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, lm.steps))))
        for g in opt.param_groups:
            g["lr"] = lr
        ids, att, lab, wts = batch()
        logits = decoder(input_ids=ids, attention_mask=att, use_cache=False).logits  # [B, T, V]
        loss = report_lm_loss(logits, lab, wts)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        progress.update(step + 1, f"loss {float(np.mean(losses[-lm.log_every :])):.3f}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out_dir / "tokenizer")
    decoder.save_pretrained(out_dir / "decoder", safe_serialization=True)
    meta = {
        "code_version": CODE_VERSION,
        "lm": dataclasses.asdict(lm),
        "tiny": dataclasses.asdict(cfg.tiny),
        "prevalence": prev,
        "seconds": time.perf_counter() - t_start,
        "final_loss": float(np.mean(losses[-50:])) if losses else None,
        "losses": [round(x, 4) for x in losses],
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2))
    log.info("tiny LM saved to %s (%.1f s)", out_dir, meta["seconds"])
    return decoder, tok


def tiny_lm_key(cfg: ReportAgentConfig) -> str:
    blob = json.dumps(
        {
            "code": CODE_VERSION,
            "lm": {k: v for k, v in dataclasses.asdict(cfg.tiny_lm).items() if k != "log_every"},
            "tiny": dataclasses.asdict(cfg.tiny),
            "end": cfg.end_marker,
            "prompt": [cfg.max_prompt_tokens, cfg.max_target_tokens, cfg.projector.n_queries],
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def ensure_tiny_lm(cfg: ReportAgentConfig, root: Path | None = None) -> Path:
    """The cached stage-0 folder (``tokenizer/``, ``decoder/``, ``meta.json``), trained once per key.

    Concurrent callers (pytest-xdist, two workers) wait on a file lock; the folder appears by an
    atomic rename, so a half-trained decoder is never loaded.
    """
    from filelock import FileLock

    root = Path(root) if root else cache_root() / "models"
    out = root / f"tiny-report-lm-{tiny_lm_key(cfg)}"
    if (out / "meta.json").exists():
        return out
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if (out / "meta.json").exists():
            return out
        staging = out.with_name(out.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        pretrain_tiny_lm(cfg, staging)
        staging.rename(out)
    return out


def load_tiny_lm(folder: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    folder = Path(folder)
    return AutoModelForCausalLM.from_pretrained(folder / "decoder"), AutoTokenizer.from_pretrained(folder / "tokenizer")
