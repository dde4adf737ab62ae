"""What the machine's arithmetic can do, for choices that depend on it (training precision).

Why a module of its own: the report writer and the dense diagnosis head both train in bfloat16
only where it is native; ``ml.agents.dense_train`` must not import the writer's module (it pulls
in transformers) to ask."""

from __future__ import annotations

import torch


def native_bf16() -> bool:
    """Whether bfloat16 runs natively here: a CUDA device, or a CPU with AVX-512 BF16 / AMX
    (where it trains the 270M decoder about 2x faster than float32; elsewhere it is emulated and
    slower than float32)."""
    if torch.cuda.is_available():
        return True
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private in torch 2.x: guarded
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
