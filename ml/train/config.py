"""Typed training configs: dataclasses, commented YAML defaults, dotted CLI overrides.

A config file is YAML whose keys mirror the dataclasses below; ``_base_: other.yaml`` merges
another file first (relative path), so tiny/CPU variants override only what differs. Command-line
``key.sub=value`` pairs are parsed as YAML scalars and applied last. Unknown keys are errors: a
typo must not silently train with a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ml.spinefm.model import SpineFMConfig


@dataclass
class DataConfig:
    manifest: str = ""  # manifest.jsonl (paths inside are relative to its folder)
    cache_dir: str | None = None  # decoded-slice cache; None = $SPINEREVIEW_CACHE/slices
    dicomweb_url: str | None = None  # for manifest series without a path (Orthanc DICOMweb root)
    num_workers: int = 2  # DataLoader worker processes per rank
    max_slices: int = 16  # slices per series kept for study-level stages (evenly spaced)
    test_fraction: float = 0.2  # patients held out of training (by patient_key hash)
    split_seed: int = 0
    p_low: float = 0.5  # robust window percentiles (per series)
    p_high: float = 99.5


@dataclass
class OptimConfig:
    lr: float = 5e-4  # peak learning rate (after warmup), per optimizer step
    min_lr: float = 1e-6  # cosine floor
    weight_decay: float = 0.04  # not applied to biases, norms, tokens
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    max_steps: int = 1000  # optimizer steps
    batch_size: int = 64  # per rank, per micro-step
    accum_steps: int = 1  # gradient accumulation micro-steps per optimizer step
    clip_grad: float = 3.0  # max grad norm; 0 disables


@dataclass
class RunConfig:
    name: str = "run"
    out_dir: str | None = None  # None = $SPINEREVIEW_CACHE/runs/<stage>/<name>
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    precision: str = "bf16"  # autocast dtype on CUDA ("bf16" | "fp32"); CPU always runs fp32
    threads: int = 0  # torch CPU threads per process; 0 = leave torch's default
    log_every: int = 10  # steps between log lines / TensorBoard points
    ckpt_every: int = 500  # steps between resumable checkpoints (and at the end)
    resume: bool = True  # continue from out_dir/checkpoint if present
    parallel: str = "auto"  # "ddp" | "fsdp" | "auto" (FSDP2 for presets marked fsdp, e.g. large)
    grad_checkpointing: bool = False


@dataclass
class SSLConfig:
    sequence_class: str = "T2"  # "T1" or "T2" (T2 includes STIR and Dixon water/fat)
    encoder: str = "base"  # registry preset
    encoder_overrides: dict[str, Any] = field(default_factory=dict)
    init_checkpoint: str | None = None  # local DINOv3 (Meta/timm names) or SpineFM encoder file
    out_dim: int = 65536  # DINO prototypes (paper: 131072)
    patch_out_dim: int = 8192  # iBOT prototypes
    head_hidden: int = 2048
    head_bottleneck: int = 256
    n_local: int = 8  # local crops (2 global crops always)
    student_temp: float = 0.1
    teacher_temp: float = 0.07
    teacher_temp_start: float = 0.04  # linear warmup of the teacher temperature
    teacher_temp_warmup: int = 300  # steps
    momentum_start: float = 0.992  # EMA of the teacher, cosine to momentum_end
    momentum_end: float = 1.0
    sinkhorn_iters: int = 3
    dino_weight: float = 1.0
    ibot_weight: float = 1.0
    koleo_weight: float = 0.1
    mask_ratio: tuple[float, float] = (0.1, 0.5)
    mask_prob: float = 0.5  # fraction of global crops that get iBOT masks
    gram_weight: float = 0.0  # > 0 in the gram stage
    gram_teacher: str | None = None  # run folder of an earlier stage; its teacher is the anchor
    resume_from: str | None = None  # gram stage: run folder whose full SSL state to continue


@dataclass
class PretrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    ssl: SSLConfig = field(default_factory=SSLConfig)


@dataclass
class AlignConfig:
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    model: SpineFMConfig = field(default_factory=SpineFMConfig)
    t1_encoder: str | None = None  # pretrain/gram run folder (its teacher backbone) for the T1 encoder
    t2_encoder: str | None = None
    init_from: str | None = None  # align run folder to continue from (synthesizer stage)
    freeze_encoders: bool = False  # True in the synthesizer stage
    align_keys: list[str] = field(default_factory=lambda: ["all", "T1", "T2"])  # case embeddings aligned
    series_classes: list[str] = field(default_factory=lambda: ["T1", "T2"])  # series fed to the model
    train_only: list[str] = field(default_factory=list)  # param-name prefixes to train (empty = all)
    encoder_lr_scale: float = 0.1  # encoder lr relative to the heads (pretrained features move slowly)


T = TypeVar("T")


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected a mapping")
        return from_dict(tp, value, f"{where}.")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where)
            except (TypeError, ValueError):
                continue
        raise TypeError(f"{where}: {value!r} does not match {tp}")
    if origin is tuple:
        return tuple(_coerce(a, v, where) for a, v in zip(typing.get_args(tp), value, strict=True))
    if origin is list:
        (a,) = typing.get_args(tp)
        return [_coerce(a, v, where) for v in value]
    if origin is dict or tp is Any:
        return value
    if tp is float and isinstance(value, int | float | str) and not isinstance(value, bool):
        return float(value)  # YAML 1.1 reads "1e-3" as a string
    if tp in (int, str, bool) and not isinstance(value, tp):
        raise TypeError(f"{where}: expected {tp.__name__}, got {value!r}")
    if tp is int and isinstance(value, bool):
        raise TypeError(f"{where}: expected int, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise KeyError(f"unknown config keys {sorted(f'{where}{k}' for k in unknown)}")
    kwargs = {k: _coerce(hints[k], v, f"{where}{k}") for k, v in data.items()}
    return cls(**kwargs)


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    data = yaml.safe_load(path.read_text()) or {}
    base = data.pop("_base_", None)
    if base:
        data = _deep_merge(load_yaml(path.parent / base), data)
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (value parsed as YAML) to a nested dict."""
    data = dict(data)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            node[p] = dict(node.get(p) or {})
            node = node[p]
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def load_config(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    data = load_yaml(path) if path else {}
    return from_dict(cls, apply_overrides(data, overrides or []))


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
