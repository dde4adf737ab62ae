"""DICOM objects -> per-slice pixels and geometry, for any transfer syntax and for multi-frame objects.

Why this module exists: hospitals archive MR in compressed transfer syntaxes (JPEG Lossless,
JPEG-LS, JPEG 2000, RLE) and current scanners export Enhanced MR (one object, many frames, the
geometry in per-frame functional groups). The model wants one thing: a stack of 2-D slices, each
with its position, orientation and pixel spacing. ``split_frames`` turns any image object into
such slices, and every way it can fail raises a ``DicomReadError`` whose message says what is
wrong with the object (not with the server that delivered it), so that callers can fail a job
with that reason and not retry it.

Decoding itself is pydicom's, with the pylibjpeg plugins (libjpeg: JPEG baseline, extended,
lossless and JPEG-LS; openjpeg: JPEG 2000; pylibjpeg: RLE) installed as dependencies.
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass
from typing import IO

import numpy as np
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import UID

_PIXEL_DATA = Tag(0x7FE0, 0x0010)
_PER_FRAME = Tag(0x5200, 0x9230)
_SHARED = Tag(0x5200, 0x9229)
_SIEMENS_MOSAIC_COUNT = Tag(0x0019, 0x100A)  # Siemens CSA: NumberOfImagesInMosaic


class DicomReadError(ValueError):
    """An image object whose pixels cannot be used; the message says why. Bad input: retrying
    cannot help."""


class DecodeError(DicomReadError):
    """The pixel data could not be decoded (codec missing or the compressed stream is corrupt)."""


class UnsupportedImage(DicomReadError):
    """A readable object that is not a stack of greyscale slices this pipeline reads (e.g. a mosaic)."""


@dataclass
class Frame:
    """One 2-D slice of an image object: a header carrying that slice's geometry, its pixels, and
    its frame number (1-based) in a multi-frame object, None for a single-frame object."""

    header: Dataset
    pixels: np.ndarray  # float32 [H, W], modality values (rescale applied)
    frame_number: int | None


def transfer_syntax(ds: Dataset) -> UID:
    """The object's transfer syntax (explicit VR little endian when the file meta is missing)."""
    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return UID(str(uid)) if uid else UID("1.2.840.10008.1.2.1")


def syntax_label(uid: str) -> str:
    """``'JPEG 2000 Image Compression (1.2.840.10008.1.2.4.91)'``: name and UID, for messages."""
    u = UID(uid)
    name = u.name if u.name != uid else "unknown transfer syntax"
    return f"{name} ({uid})"


def mosaic_count(ds: Dataset) -> int:
    """Number of images tiled in a Siemens mosaic frame (0 when the object is not a mosaic)."""
    image_type = [str(v).upper() for v in (getattr(ds, "ImageType", None) or [])]
    count = 0
    if _SIEMENS_MOSAIC_COUNT in ds:
        value = ds[_SIEMENS_MOSAIC_COUNT].value
        try:
            count = int.from_bytes(value[:2], "little") if isinstance(value, bytes) else int(value)
        except (TypeError, ValueError):
            count = 0
    if "MOSAIC" in image_type:
        return max(count, 2)
    return count if count > 1 else 0


def _group(ds: Dataset, index: int, sequence: str) -> Dataset | None:
    """Item of a functional group macro for frame ``index``: per-frame first, then shared."""
    per_frame = ds[_PER_FRAME].value if _PER_FRAME in ds else []
    shared = ds[_SHARED].value if _SHARED in ds else []
    for item in ([per_frame[index]] if index < len(per_frame) else []) + list(shared[:1]):
        seq = getattr(item, sequence, None)
        if seq:
            return seq[0]
    return None


def number_of_frames(ds: Dataset) -> int:
    try:
        return max(1, int(getattr(ds, "NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def frame_headers(ds: Dataset) -> list[tuple[Dataset, int | None]]:
    """One header per frame (no pixels): the object's top-level attributes plus that frame's
    ImagePositionPatient, ImageOrientationPatient, PixelSpacing, SliceThickness and rescale from
    its functional groups (Enhanced MR), so single- and multi-frame slices look the same to the
    sorting and geometry code. A single-frame object gives itself and frame None."""
    n = number_of_frames(ds)
    if n == 1 and _PER_FRAME not in ds:
        return [(ds, None)]
    base = Dataset()
    for elem in ds:
        if elem.tag not in (_PIXEL_DATA, _PER_FRAME):
            base.add(elem)
    if hasattr(ds, "file_meta"):
        base.file_meta = ds.file_meta
    out: list[tuple[Dataset, int | None]] = []
    for i in range(n):
        h = Dataset()
        for elem in base:  # element copies: setting a value below must not reach the source object
            h.add(copy.copy(elem))
        h.NumberOfFrames = 1
        position = _group(ds, i, "PlanePositionSequence")
        orientation = _group(ds, i, "PlaneOrientationSequence")
        measures = _group(ds, i, "PixelMeasuresSequence")
        transform = _group(ds, i, "PixelValueTransformationSequence")
        echo = _group(ds, i, "MREchoSequence")
        timing = _group(ds, i, "MRTimingAndRelatedParametersSequence")
        if position is not None and "ImagePositionPatient" in position:
            h.ImagePositionPatient = position.ImagePositionPatient
        elif n > 1 and "ImagePositionPatient" in h:
            del h.ImagePositionPatient  # one position for many frames is no per-slice geometry
        if orientation is not None and "ImageOrientationPatient" in orientation:
            h.ImageOrientationPatient = orientation.ImageOrientationPatient
        if measures is not None:
            if "PixelSpacing" in measures:
                h.PixelSpacing = measures.PixelSpacing
            if "SliceThickness" in measures:
                h.SliceThickness = measures.SliceThickness
        if transform is not None:
            for kw in ("RescaleSlope", "RescaleIntercept"):
                if kw in transform:
                    setattr(h, kw, transform[kw].value)
        if echo is not None and "EffectiveEchoTime" in echo and "EchoTime" not in h:
            h.EchoTime = echo.EffectiveEchoTime
        if timing is not None:
            for kw in ("RepetitionTime", "FlipAngle"):
                if kw in timing and kw not in h:
                    setattr(h, kw, timing[kw].value)
        out.append((h, i + 1))
    return out


def decode_pixels(ds: Dataset) -> np.ndarray:
    """Stored pixel values as [frames, H, W] (colour reduced to luminance); DicomReadError saying
    why when there are none or they cannot be decoded."""
    if _PIXEL_DATA not in ds:
        raise DicomReadError(f"no pixel data (SOP class {getattr(ds, 'SOPClassUID', '?')})")
    for kw in ("Rows", "Columns", "BitsAllocated"):
        if getattr(ds, kw, None) in (None, ""):
            raise DicomReadError(f"image pixel module incomplete: {kw} is missing")
    syntax = transfer_syntax(ds)
    try:
        arr = ds.pixel_array
    except Exception as exc:  # pydicom and its plugins raise many types; all mean "cannot decode"
        detail = " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
        detail = detail.replace("Unable to decode as exceptions were raised by all available plugins: ", "")
        raise DecodeError(f"cannot decode {syntax_label(syntax)} pixel data: {detail}"[:500]) from exc
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    n = number_of_frames(ds)
    if samples > 1:  # [(F,) H, W, S] -> luminance
        arr = arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)[: arr.shape[-1]]
    if n == 1 and arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or min(arr.shape[1:]) < 2:
        raise DicomReadError(f"pixel array of shape {tuple(arr.shape)} is not a stack of 2-D images")
    return arr


_NATIVE = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})


def pixel_data_problem(ds: Dataset) -> str:
    """Why the stored pixel data is cut short, or "" (cheap: no decoding). Native pixel data must
    hold Rows x Columns x frames x samples x bits; encapsulated data must hold one complete
    fragment per frame, ending with the sequence delimiter a truncated file lacks."""
    if _PIXEL_DATA not in ds:
        return ""
    data = ds.PixelData
    if str(transfer_syntax(ds)) in _NATIVE:
        return native_size_problem(ds, len(data))
    return fragments_problem(io.BytesIO(data), 0, len(data), need_delimiter=False)


def native_size_problem(header: Dataset, available: int) -> str:
    """Why ``available`` bytes of native pixel data are too few for the image pixel module of
    ``header``, or ""."""
    try:
        rows, cols = int(header.Rows), int(header.Columns)
        bits, samples = int(header.BitsAllocated), int(header.get("SamplesPerPixel", 1) or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        return f"image pixel module incomplete: {exc}"
    frames = number_of_frames(header)
    expected = rows * cols * frames * samples * bits // 8
    if available < expected:
        return f"truncated pixel data: {available} bytes, {expected} expected for {rows}x{cols}x{frames}"
    return ""


_ITEM = b"\xfe\xff\x00\xe0"  # (FFFE,E000) little endian
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0"  # (FFFE,E0DD)


def fragments_problem(fp: IO[bytes], start: int, end: int, *, need_delimiter: bool) -> str:
    """Why encapsulated pixel data from byte ``start`` to ``end`` of ``fp`` is incomplete, or "".
    Walks the (FFFE,E000) items (basic offset table, then fragments) by seeking past each one's
    4-byte length, which must fit before ``end``: a file of any size is checked reading 8 bytes
    per item. ``need_delimiter``: the bytes are a file's, so the (FFFE,E0DD) sequence delimiter
    must follow the last fragment (pydicom's PixelData value stops before it)."""
    offset, items = start, 0
    while offset + 8 <= end:
        fp.seek(offset)
        head = fp.read(8)
        tag, length = head[:4], int.from_bytes(head[4:8], "little")
        if tag == _SEQUENCE_DELIMITER:
            break
        if tag != _ITEM:
            return f"malformed compressed pixel data: unexpected item tag {tag.hex()} at byte {offset - start}"
        if offset + 8 + length > end:
            left = end - offset - 8
            return f"truncated compressed pixel data: item {items} declares {length} bytes, {left} left"
        offset += 8 + length
        items += 1
    else:
        if need_delimiter:
            return f"truncated compressed pixel data: {items} item(s), the file ends before the sequence delimiter"
    if items < 2:  # the basic offset table plus at least one fragment
        return "truncated compressed pixel data: no image fragment"
    return ""


def _rescale(h: Dataset, arr: np.ndarray) -> np.ndarray:
    try:
        slope = float(getattr(h, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(h, "RescaleIntercept", 0.0) or 0.0)
    except (TypeError, ValueError):
        slope, intercept = 1.0, 0.0
    return arr.astype(np.float32) * slope + intercept


def split_frames(ds: Dataset) -> list[Frame]:
    """Every 2-D slice of an image object with its own geometry; raises DicomReadError (with the
    reason) for objects the pipeline cannot read: no pixels, a codec failure, a Siemens mosaic,
    non-finite values."""
    tiles = mosaic_count(ds)
    if tiles:
        raise UnsupportedImage(
            f"Siemens mosaic ({tiles} slices tiled in one image): mosaics are not unpacked; "
            "export the series as single slices or Enhanced MR"
        )
    arr = decode_pixels(ds)
    headers = frame_headers(ds)
    if arr.shape[0] < len(headers):
        raise DecodeError(f"pixel data holds {arr.shape[0]} frame(s), NumberOfFrames says {len(headers)}")
    frames = []
    for (h, number), raw in zip(headers, arr, strict=False):
        pixels = _rescale(h, raw)
        if not np.isfinite(pixels).all():
            raise DicomReadError("pixel array has non-finite values")
        frames.append(Frame(h, pixels, number))
    return frames
