"""On-disk cache of decoded, preprocessed slices.

Decoding DICOM and windowing is the slowest part of an epoch on CPU workers. Slices are stored
as float16 ``.npy`` files keyed by SOP Instance UID + the preprocessing parameters (a different
size or window creates new entries, never stale reads). The window is per series, so a slice is
only ever cached together with its series' parameters; a whole series is read or written at once.
Writes go through a temporary file + rename so parallel DataLoader workers never see half files.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def default_cache_dir() -> Path:
    """``$SPINEREVIEW_CACHE`` or ``<repo>/.cache`` (gitignored)."""
    env = os.environ.get("SPINEREVIEW_CACHE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".cache"


class SliceCache:
    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir() / "slices"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sop_uid: str, params_key: str) -> Path:
        h = hashlib.sha1(f"{sop_uid}|{params_key}".encode()).hexdigest()
        return self.root / h[:2] / f"{h}.npy"

    def get_series(self, sop_uids: Sequence[str], params_key: str) -> np.ndarray | None:
        """[S, H, W] float32 if every slice is cached, else None."""
        paths = [self.path(u, params_key) for u in sop_uids]
        if not paths or not all(p.exists() for p in paths):
            return None
        return np.stack([np.load(p) for p in paths]).astype(np.float32)

    def get_index(self, key: str) -> list[str] | None:
        """Sorted SOP UIDs of a series folder, memoised under a key of its file names/sizes/mtimes
        (reading every header again each epoch costs more than the cached pixels)."""
        p = self.root / "index" / f"{key}.json"
        return json.loads(p.read_text()) if p.exists() else None

    def put_index(self, key: str, sop_uids: Sequence[str]) -> None:
        p = self.root / "index" / f"{key}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(list(sop_uids), fh)
        os.replace(tmp, p)

    def put_series(self, sop_uids: Sequence[str], params_key: str, arr: np.ndarray) -> None:
        for uid, sl in zip(sop_uids, arr, strict=True):
            p = self.path(uid, params_key)
            p.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, sl.astype(np.float16))
            os.replace(tmp, p)
