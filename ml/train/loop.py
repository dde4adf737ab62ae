"""The one training loop shared by every SpineFM stage.

A stage supplies a ``TrainTask`` (module, batches, loss of one batch, what to do after an
optimizer step, what to export). The loop owns everything else: torchrun/DDP/FSDP2 setup, mixed
precision, gradient accumulation, LR/WD schedules, clipping, resumable checkpoints, logging with
rates and ETA, TensorBoard.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch
from torch import nn

from ml.data.cache import default_cache_dir
from ml.progress import format_seconds
from ml.spinefm.distributed import cleanup_distributed, get_world_size, init_distributed, is_main
from ml.train.checkpoint import (
    full_state_dict,
    is_sharded,
    load_model_weights,
    load_optimizer_state,
    save_checkpoint,
    unwrap,
)
from ml.train.config import OptimConfig, RunConfig

log = logging.getLogger("ml.train")


@dataclass
class StepResult:
    loss: torch.Tensor  # scalar, already weighted; back-propagated by the loop
    metrics: dict[str, float] = field(default_factory=dict)
    samples: int = 0  # images (or studies) processed, for the throughput figure


class TrainTask(Protocol):
    module: nn.Module  # everything saved in checkpoints (DDP/FSDP wrap it)

    def param_groups(self) -> list[dict[str, Any]]: ...  # trainable params, optional "lr_scale"
    def batches(self, epoch_seed: int) -> Iterator[Any]: ...  # one pass over this rank's data
    def step(self, model: nn.Module, batch: Any, step: int) -> StepResult: ...
    def after_optimizer_step(self, step: int) -> None: ...  # e.g. EMA teacher update
    def export(self, out_dir: Path, state: dict[str, torch.Tensor]) -> None: ...  # rank 0, full state


class _NoSyncWrapper(Protocol):
    """A data-parallel wrapper (DDP) whose ``no_sync()`` skips the gradient all-reduce."""

    def no_sync(self) -> AbstractContextManager[Any]: ...


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_out_dir(run: RunConfig, stage: str) -> Path:
    return Path(run.out_dir) if run.out_dir else default_cache_dir() / "runs" / stage / run.name


def cosine_lr(step: int, cfg: OptimConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, t)))


def wrap_parallel(module: nn.Module, run: RunConfig, fsdp_preferred: bool, device: torch.device) -> nn.Module:
    """DDP, or FSDP2 ``fully_shard`` per transformer block then the root (large presets)."""
    if get_world_size() == 1:
        return module
    use_fsdp = run.parallel == "fsdp" or (run.parallel == "auto" and fsdp_preferred)
    if use_fsdp:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        for sub in module.modules():
            if type(sub).__name__ in ("EvaBlock", "EvaBlockPostNorm") and any(
                p.requires_grad for p in sub.parameters()
            ):
                fully_shard(sub, mp_policy=mp)
        fully_shard(module, mp_policy=mp)
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    return DDP(module, device_ids=ids, find_unused_parameters=True)


def train(task_factory: Callable[[Any, torch.device], TrainTask], cfg: Any, stage: str) -> Path:
    """Run a stage. ``task_factory(cfg, device) -> TrainTask``; returns the output folder."""
    run: RunConfig = cfg.run
    optim_cfg: OptimConfig = cfg.optim
    if run.threads:
        torch.set_num_threads(run.threads)
    rank, world, device = init_distributed()
    if run.device == "cpu":
        device = torch.device("cpu")
    seed_everything(run.seed + rank)
    out_dir = resolve_out_dir(run, stage)
    if is_main():
        out_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO if is_main() else logging.WARNING, format="%(asctime)s %(message)s")

    task: TrainTask = task_factory(cfg, device)
    task.module.to(device)
    from ml.train.config import to_dict

    resolved = {"stage": stage, "train": to_dict(cfg), "world_size": world}
    extra = getattr(task, "checkpoint_config", None)
    if extra:
        resolved.update(extra())

    ckpt_dir = out_dir / "checkpoint"
    resume = run.resume and (ckpt_dir / "optimizer.pt").exists()
    if resume:  # weights first, on the unwrapped module
        load_model_weights(ckpt_dir, task.module)
    # wrap before building the optimizer: FSDP2 replaces parameters by sharded DTensors
    model = wrap_parallel(task.module, run, getattr(task, "fsdp_preferred", False), device)
    sharded = is_sharded(task.module)
    groups = task.param_groups()
    optimizer = torch.optim.AdamW(groups, lr=optim_cfg.lr, betas=optim_cfg.betas)
    start = 0
    if resume:
        start = load_optimizer_state(ckpt_dir, optimizer, sharded)
        log.info("resumed %s from step %d", ckpt_dir, start)

    writer = None
    if is_main():
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out_dir / "tb"))
        except ImportError:  # tensorboard is optional
            writer = None
    amp = device.type == "cuda" and run.precision == "bf16"
    trainable = [p for g in groups for p in g["params"]]

    step, epoch = start, 0
    t0, samples_since, t_last = time.time(), 0, time.time()
    batches = task.batches(run.seed + epoch)
    model.train()
    while step < optim_cfg.max_steps:
        lr = cosine_lr(step, optim_cfg)
        for g in optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
            g["weight_decay"] = optim_cfg.weight_decay if g.get("decay", True) else 0.0
        metrics: dict[str, float] = {}
        for micro in range(optim_cfg.accum_steps):
            try:
                batch = next(batches)
            except StopIteration:
                epoch += 1
                batches = task.batches(run.seed + epoch)
                batch = next(batches)
            sync = micro == optim_cfg.accum_steps - 1 or not hasattr(model, "no_sync")
            # not sync => the wrapper has no_sync (checked just above)
            ctx = cast(_NoSyncWrapper, model).no_sync() if not sync else _null()
            with ctx, torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                res = task.step(model, batch, step)
                (res.loss / optim_cfg.accum_steps).backward()
            samples_since += res.samples
            for k, v in res.metrics.items():
                metrics[k] = metrics.get(k, 0.0) + v / optim_cfg.accum_steps
        if optim_cfg.clip_grad > 0:
            norm = torch.nn.utils.clip_grad_norm_(trainable, optim_cfg.clip_grad)
            metrics["grad_norm"] = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        task.after_optimizer_step(step)
        step += 1

        if is_main() and (step % run.log_every == 0 or step == optim_cfg.max_steps):
            now = time.time()
            rate = samples_since * world / max(now - t_last, 1e-9)
            sps = (step - start) / max(now - t0, 1e-9)
            eta = (optim_cfg.max_steps - step) / max(sps, 1e-9)
            text = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
            log.info(
                "%s step %d/%d lr=%.2e %s | %.1f samples/s %.2f steps/s eta %s",
                stage, step, optim_cfg.max_steps, lr, text, rate, sps, format_seconds(eta),
            )  # fmt: skip
            if writer is not None:
                for k, v in metrics.items():
                    writer.add_scalar(f"train/{k}", v, step)
                writer.add_scalar("train/lr", lr, step)
                writer.add_scalar("train/samples_per_s", rate, step)
            samples_since, t_last = 0, now
        if step % run.ckpt_every == 0 or step == optim_cfg.max_steps:
            save_checkpoint(ckpt_dir, model, optimizer, step, resolved, sharded)

    state = full_state_dict(model)  # collective under FSDP2: every rank takes part
    if is_main():
        task.export(out_dir, state)
        if writer is not None:
            writer.close()
        log.info("%s done in %s -> %s", stage, format_seconds(time.time() - t0), out_dir)
    cleanup_distributed()
    return out_dir


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def make_param_groups(module: nn.Module, prefixes_lr: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Trainable params split by decay / no-decay and by optional per-prefix lr scales."""
    prefixes_lr = prefixes_lr or {}
    buckets: dict[tuple[float, bool], list] = {}
    for name, p in unwrap(module).named_parameters():
        if not p.requires_grad:
            continue
        scale = next((s for pre, s in prefixes_lr.items() if name.startswith(pre)), 1.0)
        decay = p.ndim >= 2 and not name.endswith(("token", "tokens"))
        buckets.setdefault((scale, decay), []).append(p)
    return [{"params": ps, "lr_scale": s, "decay": d} for (s, d), ps in buckets.items()]


os.environ.setdefault("HF_HUB_OFFLINE", "1")
