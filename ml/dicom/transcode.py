"""Re-encode DICOM files in another transfer syntax, to exercise the decoders on known content.

Why: no compressed spine MRI ships in any package, so the decoding path is checked on copies of a
generated spine study in each transfer syntax a scanner or archive sends. The encoders are real
ones: dcmtk's command-line tools (``dcmcjpeg``, ``dcmcjpls``, ``dcmcrle``, ``dcmconv``; Debian
package ``dcmtk``) and pydicom with pylibjpeg-openjpeg for JPEG 2000.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pydicom
from pydicom.uid import JPEG2000, JPEG2000Lossless

# name -> (transfer syntax UID, lossless?, how to make it: dcmtk argv prefix or "pydicom")
SYNTAXES: dict[str, tuple[str, bool, tuple[str, ...]]] = {
    "explicit-little": ("1.2.840.10008.1.2.1", True, ("dcmconv", "+te")),
    "implicit-little": ("1.2.840.10008.1.2", True, ("dcmconv", "+ti")),
    "explicit-big": ("1.2.840.10008.1.2.2", True, ("dcmconv", "+tb")),
    "deflated": ("1.2.840.10008.1.2.1.99", True, ("dcmconv", "+td")),
    "rle": ("1.2.840.10008.1.2.5", True, ("dcmcrle",)),
    "jpeg-lossless-sv1": ("1.2.840.10008.1.2.4.70", True, ("dcmcjpeg", "+e1")),
    "jpeg-lossless": ("1.2.840.10008.1.2.4.57", True, ("dcmcjpeg", "+el")),
    "jpeg-baseline": ("1.2.840.10008.1.2.4.50", False, ("dcmcjpeg", "+eb")),
    "jpeg-extended": ("1.2.840.10008.1.2.4.51", False, ("dcmcjpeg", "+ee")),
    "jpeg-ls-lossless": ("1.2.840.10008.1.2.4.80", True, ("dcmcjpls", "+el")),
    "jpeg-ls-near": ("1.2.840.10008.1.2.4.81", False, ("dcmcjpls", "+en")),
    "j2k-lossless": (str(JPEG2000Lossless), True, ("pydicom",)),
    "j2k-lossy": (str(JPEG2000), False, ("pydicom",)),
}


class EncoderMissing(RuntimeError):
    """The tool that makes this transfer syntax is not installed; the message names it."""


def available(name: str) -> bool:
    tool = SYNTAXES[name][2][0]
    if tool == "pydicom":
        try:
            import openjpeg  # noqa: F401  (pylibjpeg-openjpeg: pydicom's JPEG 2000 encoder)
        except ImportError:
            return False
        return True
    return shutil.which(tool) is not None


def transcode(src: Path, dst: Path, name: str) -> Path:
    """Write ``src`` re-encoded as transfer syntax ``name`` (a key of ``SYNTAXES``) to ``dst``."""
    uid, lossless, how = SYNTAXES[name]
    dst.parent.mkdir(parents=True, exist_ok=True)
    if how[0] == "pydicom":
        if not available(name):
            raise EncoderMissing("pylibjpeg-openjpeg is not installed (pip install pylibjpeg-openjpeg)")
        ds = pydicom.dcmread(src)
        j2k_cr: list[float] | None = None if lossless else [20]  # 20:1, a typical lossy archive ratio
        # a lossless re-encoding is the same image: it keeps its SOP Instance UID (lossy ones get a new one)
        ds.compress(uid, encoding_plugin="pylibjpeg", generate_instance_uid=not lossless, j2k_cr=j2k_cr)
        ds.save_as(dst, enforce_file_format=True)
        return dst
    if shutil.which(how[0]) is None:
        raise EncoderMissing(f"{how[0]} not found: apt-get install dcmtk")
    subprocess.run([*how, str(src), str(dst)], check=True, capture_output=True, timeout=120)
    return dst


def transcode_tree(src_root: Path, dst_root: Path, name: str) -> list[Path]:
    """Every ``*.dcm`` under ``src_root`` re-encoded under ``dst_root`` (same relative paths)."""
    out = []
    for f in sorted(src_root.rglob("*.dcm")):
        out.append(transcode(f, dst_root / f.relative_to(src_root), name))
    return out
