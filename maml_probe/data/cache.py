"""Prepared caches: one uint8 ``.npy`` array (memory-mappable) plus a ``.json`` record.

The record stores the cache format version, the build options and a fingerprint of every
source it was built from (resolved path, size and ``mtime_ns`` of each file; for a folder its
own ``mtime_ns``, which changes when entries are added, removed or renamed). A cache whose
record does not match the current sources and options is rebuilt. Both files are written
atomically (temporary file in the cache directory, then ``os.replace``); the ``.json`` is
written last and is what makes a cache valid, so an interrupted build leaves no usable cache.
If the cache directory cannot be written the data is still returned, with a warning.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

CACHE_FORMAT = 1


def fingerprint(sources: Iterable[Path]) -> list[dict[str, Any]]:
    """Path, kind, size and mtime of each source (see module docstring)."""
    out = []
    for p in sources:
        st = Path(p).stat()
        is_dir = Path(p).is_dir()
        out.append({"path": str(Path(p).resolve()), "kind": "dir" if is_dir else "file",
                    "size": None if is_dir else st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def cache_key(name: str, sources: Iterable[Path]) -> str:
    """``<name>-<hash of the resolved source paths>``: caches of different copies coexist."""
    h = hashlib.sha1("\n".join(str(Path(p).resolve()) for p in sources).encode()).hexdigest()
    return f"{name}-{h[:10]}"


def cache_files(cache_dir: Path, key: str) -> tuple[Path, Path]:
    """The ``.npy`` and ``.json`` paths of cache ``key``."""
    return cache_dir / f"{key}.npy", cache_dir / f"{key}.json"


def _normalise(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def load(cache_dir: Path, key: str, record: dict[str, Any],
         mmap: bool = False) -> tuple[np.ndarray, dict[str, Any]] | None:
    """The cached array and its record if the cache exists and matches ``record``, else None.

    ``mmap=True`` maps the file copy-on-write instead of reading it into memory.
    """
    npy, meta_path = cache_files(Path(cache_dir), key)
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    want = _normalise(record)
    if (meta.get("format") != CACHE_FORMAT or meta.get("sources") != want["sources"]
            or meta.get("options") != want["options"]):
        return None
    try:
        if npy.stat().st_size != meta["npy_bytes"]:
            return None
        array = np.load(npy, mmap_mode="c" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, KeyError):
        return None
    if list(array.shape) != meta["shape"] or array.dtype != np.uint8:
        return None
    return array, meta


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save(cache_dir: Path, key: str, array: np.ndarray, meta: dict[str, Any]) -> Path:
    """Write ``array`` and ``meta`` atomically; returns the ``.npy`` path."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    npy, meta_path = cache_files(cache_dir, key)
    meta_path.unlink(missing_ok=True)  # invalidate first: a stale record never points at new data
    array = np.ascontiguousarray(array, dtype=np.uint8)
    _atomic_write(npy, lambda f: np.save(f, array, allow_pickle=False), "wb")
    meta = dict(meta, npy_bytes=npy.stat().st_size, shape=list(array.shape), dtype="uint8",
                format=CACHE_FORMAT)
    _atomic_write(meta_path, lambda f: f.write(json.dumps(meta, indent=1)), "w")
    return npy


def cached_array(cache_dir: Path, key: str, sources: Iterable[Path], options: dict[str, Any],
                 build: Callable[[], tuple[np.ndarray, dict[str, Any]]],
                 mmap: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Load cache ``key`` if it matches ``sources`` and ``options``; else ``build()`` and save.

    ``build`` returns the uint8 array and extra record fields (e.g. ``class_names``). The
    returned record has ``cache_hit`` (bool) and, after a build, ``build_seconds``.
    """
    sources = list(sources)
    record = _normalise({"sources": fingerprint(sources), "options": options})
    hit = load(cache_dir, key, record, mmap=mmap)
    if hit is not None:
        array, meta = hit
        return array, dict(meta, cache_hit=True)
    start = time.perf_counter()
    array, extra = build()
    meta = dict(_normalise(extra), **record, key=key, build_seconds=time.perf_counter() - start,
                built_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
    try:
        npy = save(cache_dir, key, array, meta)
    except OSError as exc:
        warnings.warn(f"could not write the cache to {cache_dir} ({exc}); the data is used "
                      f"without caching. Set cache_dir= or $MAML_PROBE_CACHE to a writable folder.",
                      stacklevel=2)
        return array, dict(meta, cache_hit=False, cached=False, shape=list(array.shape))
    if mmap:
        array = np.load(npy, mmap_mode="c")
    return array, dict(meta, cache_hit=False, shape=list(array.shape))
