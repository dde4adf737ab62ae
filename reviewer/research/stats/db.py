"""How the statistics talk to PostgreSQL.

A quantile, a rank correlation or an AUROC needs every value (no running counter gives them),
so for those the database extracts exactly the numbers needed (JSON keys, the newest label
extraction, the finding probabilities) and packs them into one bytea per query (fixed-width
big-endian fields, ``string_agg``); numpy reads it in one call. Binary floats are exact, so the
figures equal the row functions' to the last bit. Everything countable is counted there."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, cast

import numpy as np
from django.db import connection

if TYPE_CHECKING:
    from django.db.models import Model


def table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def fetch_one(sql: str, params: list | tuple = ()) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def fetch_packed(sql: str, params: list | tuple = ()) -> tuple:
    """One row of packed (bytea) values in PostgreSQL's binary format: half the bytes of the
    text format's hex, and no hex to encode and decode (tens of MB at 100,000 reviews)."""
    import psycopg

    connection.ensure_connection()
    # Django's cursors bind parameters client-side, which rules out binary results
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, binary=True)
        return cast(tuple, cursor.fetchone())  # an aggregate without GROUP BY: always one row


@contextmanager
def without_jit() -> Iterator[None]:
    """A transaction for the statistics queries on PostgreSQL: without JIT compilation (they run
    once per change of the data, and compiling them costs more than it saves: about 90 ms of 480
    at 10,000 reviews) and with room to sort and hash in memory. Re-entrant: an inner use adds
    no savepoint."""
    from django.db import transaction

    if connection.vendor != "postgresql" or getattr(connection, "_stats_without_jit", False):
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")
            # the packed columns are sorted and hashed in memory, not in temporary files
            cursor.execute("SET LOCAL work_mem = '256MB'")
        connection._stats_without_jit = True
        try:
            yield
        finally:
            connection._stats_without_jit = False


def unpack(packed: object, dtype: np.dtype) -> np.ndarray:
    return np.frombuffer(bytes(packed or b""), dtype=dtype)  # type: ignore[call-overload]
