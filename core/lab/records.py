"""Measurements kept as one JSON file (never pickle), written atomically, tied to a key."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["JsonRecords"]


class JsonRecords:
    """``records`` (a dict) saved to ``path`` under ``key`` (the task and models they belong to): a
    file with another key is ignored, and replaced at the first ``save``; ``path=None`` keeps the
    records in memory only. A crash mid-save leaves the previous file whole (write, then rename)."""

    def __init__(self, path: str | os.PathLike[str] | None, key: Mapping[str, Any]) -> None:
        self.path = Path(path) if path is not None else None
        self.key = dict(key)
        self.records: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError):
                data = {}
            if data.get("key") == self.key:
                self.records = data.get("records", {})

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": self.key, "records": self.records}))
        os.replace(tmp, self.path)
