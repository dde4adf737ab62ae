"""``python -m ml train STAGE CONFIG [key.sub=value ...]``.

Stages: ``pretrain`` and ``gram`` (self-supervised encoders), ``align`` (CLIP with reports),
``synthesizer`` (router for other-class series). Run on many GPUs with
``torchrun --nproc_per_node=N -m ml train STAGE CONFIG ...``.
"""

from __future__ import annotations

import argparse
import os
from functools import partial

STAGES = ("pretrain", "gram", "align", "synthesizer")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(prog="python -m ml train", description=__doc__.split("\n")[0])
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("config", help="YAML config (see ml/configs/); '-' for built-in defaults")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=1e-4 run.name=x")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    args = parser.parse_args(argv)

    from ml.train.config import AlignConfig, PretrainConfig, load_config, to_dict
    from ml.train.loop import train

    path = None if args.config == "-" else args.config
    if args.stage in ("pretrain", "gram"):
        from ml.train.pretrain import PretrainTask

        cfg: PretrainConfig | AlignConfig = load_config(PretrainConfig, path, args.overrides)
        factory = partial(_make, PretrainTask, stage=args.stage)
    else:
        from ml.train.align import AlignTask

        cfg = load_config(AlignConfig, path, args.overrides)
        factory = partial(_make, AlignTask, stage=args.stage)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return 0
    train(factory, cfg, args.stage)
    return 0


def _make(task_cls, cfg, device, stage):
    return task_cls(cfg, device, stage)
