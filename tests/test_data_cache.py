"""Prepared caches: atomic writes, source fingerprints, invalidation, unwritable folders."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from maml_probe.data import cache


def build_counter():
    calls = []

    def build():
        calls.append(1)
        return np.arange(24, dtype=np.uint8).reshape(2, 3, 1, 2, 2), {"class_names": ["a", "b"]}
    return build, calls


def test_build_once_then_hit_then_rebuild_on_changes(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 10)
    build, calls = build_counter()
    args = (tmp_path / "c", "k", [src])
    a, m = cache.cached_array(*args, {"opt": 1}, build)
    b, m2 = cache.cached_array(*args, {"opt": 1}, build)
    assert len(calls) == 1 and m2["cache_hit"] and np.array_equal(a, b)
    assert m2["class_names"] == ["a", "b"] and m2["sources"][0]["size"] == 10
    cache.cached_array(*args, {"opt": 2}, build)                      # options changed
    assert len(calls) == 2
    src.write_bytes(b"y" * 11)                                         # source changed
    cache.cached_array(*args, {"opt": 2}, build)
    assert len(calls) == 3
    os.utime(src, ns=(1, 1))                                           # mtime changed
    cache.cached_array(*args, {"opt": 2}, build)
    assert len(calls) == 4
    npy, _ = cache.cache_files(tmp_path / "c", "k")
    npy.write_bytes(npy.read_bytes()[:-5])                             # damaged array file
    cache.cached_array(*args, {"opt": 2}, build)
    assert len(calls) == 5
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["k.json", "k.npy"]


def test_mmap_returns_a_writable_copy_on_write_map(tmp_path):
    src = tmp_path / "s"
    src.write_bytes(b"1")
    build, _ = build_counter()
    cache.cached_array(tmp_path, "k", [src], {}, build)
    arr, meta = cache.cached_array(tmp_path, "k", [src], {}, build, mmap=True)
    assert isinstance(arr, np.memmap) and meta["cache_hit"]
    arr[0, 0, 0, 0, 0] = 200                                           # does not touch the file
    assert np.load(tmp_path / "k.npy")[0, 0, 0, 0, 0] == 0


def test_record_is_written_last_and_a_missing_record_means_no_cache(tmp_path):
    src = tmp_path / "s"
    src.write_bytes(b"1")
    build, calls = build_counter()
    cache.cached_array(tmp_path / "c", "k", [src], {}, build)
    meta = json.loads((tmp_path / "c" / "k.json").read_text())
    assert meta["shape"] == [2, 3, 1, 2, 2] and meta["npy_bytes"] == (tmp_path / "c" / "k.npy").stat().st_size
    (tmp_path / "c" / "k.json").unlink()
    cache.cached_array(tmp_path / "c", "k", [src], {}, build)
    assert len(calls) == 2


def test_unwritable_cache_dir_warns_and_still_returns_data(tmp_path):
    src = tmp_path / "s"
    src.write_bytes(b"1")
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    build, _ = build_counter()
    with pytest.warns(UserWarning, match="MAML_PROBE_CACHE"):
        arr, meta = cache.cached_array(blocker / "cache", "k", [src], {}, build)
    assert arr.shape == (2, 3, 1, 2, 2) and not meta["cache_hit"]
    assert meta["shape"] == [2, 3, 1, 2, 2] and meta["cached"] is False  # what `data prepare` prints


def test_cache_key_depends_on_the_source_paths(tmp_path):
    assert cache.cache_key("x", [tmp_path / "a"]) != cache.cache_key("x", [tmp_path / "b"])
    assert cache.cache_key("x", [tmp_path / "a"]).startswith("x-")
