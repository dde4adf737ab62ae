"""SpineFM: T1/T2 DINOv3 encoders, report alignment, synthesizer, patient embeddings.

Public entry points: ``create_model`` (encoder registry), ``SpineFM`` (the aligned model), and
``embed_study`` (per-slice/series/case embeddings used by every agent).
"""

from ml.spinefm.registry import create_model, get_preset, list_models

__all__ = ["create_model", "get_preset", "list_models"]
