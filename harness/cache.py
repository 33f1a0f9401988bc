"""The one content-addressed cache: exports, variants, calibration ranges and fallback searches.

An entry is a folder named by the hash of what made it. It is built in a staging folder and renamed
into place, so it appears whole or not at all; `meta.json` inside it marks it complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

META = "meta.json"


def cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE_DIR") or Path.home() / ".cache" / "harness")


def cache_key(parts: dict) -> str:
    """A short stable hash of everything that determines an entry."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    folder: Path
    meta: dict
    cached: bool  # True: found, not built now


def cached_entry_if_present(kind: str, parts: dict) -> CacheEntry | None:
    """The entry for `parts` if it was built before; nothing is built."""
    folder = cache_dir() / kind / cache_key(parts)
    return CacheEntry(folder, json.loads((folder / META).read_text()), True) if (folder / META).is_file() else None


def cached_entry(kind: str, parts: dict, build: Callable[[Path], dict]) -> CacheEntry:
    """The entry for `parts`, or `build(staging_folder) -> meta` run now and committed by rename."""
    found = cached_entry_if_present(kind, parts)
    if found is not None:
        return found
    folder = cache_dir() / kind / cache_key(parts)
    from harness.files import disk_error

    staging = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
        meta = build(staging)
        (staging / META).write_text(json.dumps(meta, indent=2))
        if folder.exists():  # a half-written entry of an older harness: replace it
            shutil.rmtree(folder)
        os.replace(staging, folder)
        return CacheEntry(folder, meta, False)
    except OSError as e:
        raise disk_error(e, cache_dir(), "point HARNESS_CACHE_DIR at a folder on a disk with room") from e
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
