"""Agent artifacts: tensors as safetensors + the resolved config and metadata as JSON, side by side.

Every agent family saves one folder::

    weights.safetensors   # numpy arrays only (no pickles: safe to load from untrusted sources)
    config.json           # {"family", "version", "config": <dataclass>, "meta": {...}}

``version`` is ``<family>-<first 10 hex of the weights' sha1>``: two artifacts with the same
version have identical weights, which is what the review app records next to every draft.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from safetensors.numpy import load_file, save_file

from ml.train.config import from_dict

T = TypeVar("T")


def save_artifact(
    folder: str | Path, family: str, config: Any, arrays: dict[str, np.ndarray], meta: dict[str, Any] | None = None
) -> str:
    """Write ``folder`` and return the artifact's version string."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "weights.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(weights))
    version = f"{family}-{hashlib.sha1(weights.read_bytes()).hexdigest()[:10]}"
    is_instance = dataclasses.is_dataclass(config) and not isinstance(config, type)
    cfg = dataclasses.asdict(config) if is_instance else dict(config)
    doc = {"family": family, "version": version, "config": cfg, "meta": meta or {}}
    (folder / "config.json").write_text(json.dumps(doc, indent=2, sort_keys=True, default=_json_default))
    return version


def load_artifact(folder: str | Path, family: str, config_cls: type[T]) -> tuple[T, dict[str, np.ndarray], dict]:
    """(config, arrays, document) of an artifact folder, checking that it is of ``family``."""
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"no agent artifact in {folder} (config.json missing)")
    doc = json.loads((folder / "config.json").read_text())
    if doc.get("family") != family:
        raise ValueError(f"{folder} holds a {doc.get('family')!r} artifact, expected {family!r}")
    arrays = load_file(str(folder / "weights.safetensors"))
    return from_dict(config_cls, doc["config"]), arrays, doc


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer | np.floating):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")
