"""Reading results databases without opening them for writing: `check_store_file` (is this a genbench results
database, and of which schema version?) and `read_any_store` (every table of a database written by any genbench
version, for reports of old runs)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Optional

import pandas as pd

from genbench.errors import InvalidInputError

SQLITE_MAGIC = b"SQLite format 3\x00"


def check_store_file(path: str | os.PathLike) -> int:
    """Validate that `path` is a genbench results database without writing to it (opened read-only); return its
    schema version. InvalidInputError says what it is instead: not a SQLite file, a SQLite file without genbench's
    meta table, unreadable."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as e:
        raise InvalidInputError(f"cannot read {p}: {e.strerror or e}") from None
    if head != SQLITE_MAGIC:
        raise InvalidInputError(f"{p} is not a SQLite database, so not a genbench results database")
    try:
        conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise InvalidInputError(f"{p} is a SQLite database but not a genbench results database ({e})") from None
    if row is None or not str(row[0]).strip().isdigit():
        raise InvalidInputError(f"{p} has no schema_version: it is not a genbench results database")
    return int(row[0])


StoreError = sqlite3.Error  # what reading a damaged or foreign database raises (callers catch it without SQL)


def read_any_store(path: str | os.PathLike) -> tuple[Optional[int], dict[str, pd.DataFrame]]:
    """(schema version or None, {table: DataFrame}) of a results database written by any genbench version,
    opened read-only: every table whole, whatever columns it has (reports read what an old store holds).
    InvalidInputError when the file is not a SQLite database."""
    con = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    try:
        try:
            tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        except sqlite3.DatabaseError as e:
            raise InvalidInputError(f"{path} is not a SQLite results database ({e})") from None
        frames = {}
        for t in tables:
            cur = con.execute(f'SELECT * FROM "{t}"')
            frames[t] = pd.DataFrame(cur.fetchall(), columns=[c[0] for c in cur.description])
        version = None
        if "meta" in tables:
            row = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row and str(row[0]).isdigit() else None
        return version, frames
    finally:
        con.close()
