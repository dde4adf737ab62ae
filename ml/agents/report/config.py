"""Typed configuration of the Medical Report Agent (defaults: ml/configs/agents/report.yaml)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


@dataclass
class ProjectorConfig:
    slice_dim: int = 192  # D of the SpineFM slice features (tiny preset: 192)
    n_queries: int = 64  # learned queries = image tokens (paper: 64)
    dim: int = 256  # attention width inside the projector
    heads: int = 4
    max_slices: int = 64  # slice position embeddings per series (longer series are clipped)
    dropout: float = 0.0


@dataclass
class LoraConfig:
    r: int = 8  # paper (Llama-3.1-8B): 128
    alpha: int = 16  # paper: 256
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class TinyDecoderConfig:
    """The from-scratch Llama-architecture decoder of the ``tiny`` preset."""

    hidden_size: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate_size: int = 256
    vocab_size: int = 2048  # byte-level BPE trained on the stage-0 report corpus
    max_position_embeddings: int = 2048


@dataclass
class TinyLMConfig:
    """Stage 0 of the ``tiny`` preset: the text-only language model (``pretrain.py``), cached by all of this."""

    n_texts: int = 20000  # distinct generated reports (each seen with fresh simulated agent tokens)
    steps: int = 1500  # ~13 min once on 2 idle CPU cores; the bootstrap pipeline uses 500
    batch_size: int = 8
    lr: float = 3e-3
    warmup: int = 50
    seed: int = 0
    max_dprime: float = 4.0  # simulated agents range from useless (d' = 0) to good (d' = 4)
    p_exact: float = 0.4  # share of agent-layout prompts whose simulated agents state the truth exactly
    impression_weight: float = 4.0  # loss weight of the IMPRESSION's tokens (where the findings are listed)
    p_agent_tokens: float = 0.5  # share of prompts in the agent layout (the rest: the plain layout)
    tokenizer_texts: int = 3000  # reports (+ a quarter as many prompts) the BPE is trained on
    regions: list[str] = field(default_factory=lambda: ["lumbar"])
    log_every: int = 50


@dataclass
class TrainConfig:
    stage1_steps: int = 100  # projector only (decoder frozen)
    stage2_steps: int = 200  # projector + LoRA adapters (decoder base frozen)
    batch_size: int = 4
    lr_stage1: float = 1e-3
    lr_stage2: float = 5e-4
    weight_decay: float = 0.0
    warmup: int = 10
    seed: int = 0
    log_every: int = 20
    threads: int = 2


@dataclass
class ReportAgentConfig:
    preset: str = "tiny"  # "tiny" | "gemma-3-270m" | "llama-3.1-8b"
    decoder_path: str = ""  # local HF folder (llama-3.1-8b; optional override for the others)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    tiny: TinyDecoderConfig = field(default_factory=TinyDecoderConfig)
    tiny_lm: TinyLMConfig = field(default_factory=TinyLMConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    max_prompt_tokens: int = 1024  # the similar-case report is truncated to fit
    max_target_tokens: int = 768
    max_new_tokens: int = 512
    # drafting: tokens proposed from the prompt (the similar case's report) and checked in one
    # pass (prompt lookup decoding; the greedy draft is unchanged, reached in fewer passes); 0: off
    prompt_lookup_tokens: int = 10
    prompt_lookup_ngram: int = 3  # the longest run of last words matched in the prompt
    end_marker: str = "<end_of_report>"
    dtype: str = "float32"  # a torch dtype name, or "auto": bfloat16 where native (CUDA, AMX CPUs), else float32
    # pretrained presets: "report" limits the decoder's output to the tokens of the report corpus
    # and the training targets (vocab.py: ~30x less output compute on CPU); "full" keeps all
    vocab: str = "full"
    vocab_corpus: int = 2000  # generated reports (all regions) added to the targets' tokens
    # 2: the tiny decoder starts from the cached text LM (pretrain.py); 3: the writer writes from
    # ALIGNMENT on (prompt.writer_text)
    version: str = "report-agent/3"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReportAgentConfig:
        subs = {
            "projector": ProjectorConfig,
            "lora": LoraConfig,
            "tiny": TinyDecoderConfig,
            "tiny_lm": TinyLMConfig,
            "train": TrainConfig,
        }
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown report-agent config keys {sorted(unknown)}; known: {sorted(known)}")
        kw: dict[str, Any] = {}
        for k, v in data.items():
            if k in subs:
                sub_known = {f.name for f in fields(subs[k])}
                v = dict(v or {})
                if k == "train":  # report-agent/1 artifacts: stage 0 used to live here (now ``tiny_lm``)
                    v.pop("stage0_steps", None)
                    v.pop("lr_stage0", None)
                bad = set(v) - sub_known
                if bad:
                    raise ValueError(f"unknown keys {sorted(bad)} in report-agent config section {k!r}")
                kw[k] = subs[k](**v)
            else:
                kw[k] = v
        return cls(**kw)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> ReportAgentConfig:
        data = yaml.safe_load(Path(path).read_text()) or {}
        for key, value in (overrides or {}).items():
            node = data
            *parents, leaf = key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        return cls.from_dict(data)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2))
