"""Keyed pseudonyms for exports that key many rows: ``deid.pseudonym`` with the HMAC keyed once.

Its own module so that every export (the review rows in ``research/exports.py``, the reading
rows in ``research/reading.py``) can use it without importing another export's module.
"""

from __future__ import annotations

import hashlib
import hmac

from reviewer.deid import KEY_HEX_DIGITS


class Pseudonyms:
    """``deid.pseudonym`` with the HMAC keyed once (a copy per value instead of a new key
    schedule) and reader keys memoised: the same keys, at about half the cost per row."""

    def __init__(self, secret: bytes) -> None:
        self._keyed = hmac.new(secret, digestmod=hashlib.sha256)
        self._readers: dict[object, str] = {}

    def __call__(self, kind: str, value: object) -> str:
        h = self._keyed.copy()
        h.update(f"{kind}:{value}".encode())
        return h.hexdigest()[:KEY_HEX_DIGITS]

    def reader(self, reader_id: object) -> str:
        found = self._readers.get(reader_id)
        if found is None:
            found = self._readers[reader_id] = self("reader", reader_id)
        return found
