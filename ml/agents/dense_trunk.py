"""The dense head's trunk: ImageNet MobileNetV2 up to block 17 with its batch norms folded, and
the spine-adapted weights of its last blocks (``DiagnosisConfig.dense_adapt_blocks``).

Why a module of its own: the trunk is loaded by inference (``ml.agents.dense``), by training and
by adaptation (``ml.agents.dense_adapt``); its digest keys the cached cells, so cells computed by
one trunk are never served for another.
"""

from __future__ import annotations

import hashlib
from itertools import pairwise

import numpy as np
import torch
from torch import nn

TRUNK_CHANNELS = 320
FINE_CHANNELS = 96  # MobileNetV2 block 13 (stride 16)


def fold_batch_norms(net: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a Conv2d (in an ``nn.Sequential``) into that
    convolution, in place; the module must be in eval mode.

    Why: the trunk is frozen, so its batch norms are fixed affine maps. Folded, the trunk gives
    the same cells to ~3e-6 relative and runs ~1.9x faster on CPU (``benchmarks/trunk_speed.py``),
    where encoding every study's views is a large step of building a pipeline."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for mod in list(net.modules()):
        if not isinstance(mod, nn.Sequential):
            continue
        items = list(mod._modules.items())
        for (n1, a), (n2, b) in pairwise(items):
            if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                mod._modules[n1] = fuse_conv_bn_eval(a, b)
                mod._modules[n2] = nn.Identity()
    return net


ADAPT_PREFIX = "adapt."  # artifact arrays of spine-adapted trunk blocks: "adapt.<trunk state_dict key>"
FIRST_TAIL_BLOCK = 14  # blocks 14-17: the stride-32 part, fed by the cached block-13 ("fine") cells


def load_trunk(adapted: dict[str, np.ndarray] | None = None) -> nn.Sequential:
    """Frozen ImageNet MobileNetV2 up to block 17, batch norms folded into the convolutions:
    [B, 3, H, W] -> [B, 320, H/32, W/32] (``[:14]`` is the stride-16 part, 96 channels).

    ``adapted`` (an artifact's ``adapt.*`` arrays, ``adapted_arrays``) replaces the weights of the
    spine-adapted blocks; the trunk then carries their digest (``trunk_digest``), which keys its cells."""
    from ml.agents.baselines import load_mobilenet_v2

    trunk = load_mobilenet_v2().features[:18].eval()
    trunk.requires_grad_(False)
    trunk = fold_batch_norms(trunk)
    mine = {k[len(ADAPT_PREFIX) :]: v for k, v in (adapted or {}).items() if k.startswith(ADAPT_PREFIX)}
    if mine:
        own = trunk.state_dict()
        bad = [k for k in mine if k not in own or int(k.split(".")[0]) < FIRST_TAIL_BLOCK]
        if bad:
            raise ValueError(f"adapted trunk weights that are not blocks 14-17 of the folded trunk: {bad[:3]}")
        trunk.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in mine.items()}, strict=False)
        trunk.trunk_digest = weights_digest(mine)  # type: ignore[assignment]
    return trunk  # type: ignore[return-value]


def weights_digest(arrays: dict[str, np.ndarray]) -> str:
    """10 hex of the sha1 of the adapted blocks' names and float32 bytes."""
    h = hashlib.sha1()
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(np.ascontiguousarray(arrays[k], np.float32).tobytes())
    return h.hexdigest()[:10]


def trunk_digest(trunk: nn.Module | None) -> str:
    """The empty string for the generic trunk (or None: the generic one is loaded when needed), else the
    digest of its adapted blocks."""
    return str(getattr(trunk, "trunk_digest", "")) if trunk is not None else ""


def adapted_arrays(trunk: nn.Module, n_blocks: int) -> dict[str, np.ndarray]:
    """The weights of the trunk's last ``n_blocks`` blocks as artifact arrays (``adapt.<key>``)."""
    first = 18 - n_blocks
    return {
        f"{ADAPT_PREFIX}{k}": v.detach().numpy().astype(np.float32).copy()
        for k, v in trunk.state_dict().items()
        if n_blocks and int(k.split(".")[0]) >= first
    }


@torch.inference_mode()
def tail_cells(trunk: nn.Sequential, fine: np.ndarray) -> np.ndarray:
    """Block-13 cells [V, 2g, 2g, 96] -> the trunk's stride-32 cells [V, g, g, 320] (float16):
    blocks 14-17 only, no view re-encoded from pixels."""
    g = fine.shape[1] // 2
    if len(fine) == 0:
        return np.zeros((0, g, g, TRUNK_CHANNELS), np.float16)
    x = torch.from_numpy(np.asarray(fine, np.float32)).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    out = [trunk[FIRST_TAIL_BLOCK:](x[i : i + 64]) for i in range(0, len(x), 64)]
    return torch.cat(out).permute(0, 2, 3, 1).numpy().astype(np.float16)
