"""Downloads against a local HTTP server, installs from a path, and the ``data`` CLI."""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pytest

try:
    from data_fixtures import make_cifar100, make_miniimagenet_csv, make_omniglot, serve, truncated_copy
except ImportError:  # tests/ imported as a package
    from tests.data_fixtures import make_cifar100, make_miniimagenet_csv, make_omniglot, serve, truncated_copy

from maml_probe.data import IntegrityError, load_omniglot
from maml_probe.data.cli import add_data_parser, main, run_data_command
from maml_probe.data.download import download_dataset, fetch, install_from_path


@pytest.fixture(scope="module")
def omniglot_zips(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("omni_src")
    return {p.name: p.read_bytes() for p in make_omniglot(folder)}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_fetch_verifies_and_installs(tmp_path, omniglot_zips):
    data = omniglot_zips["images_background.zip"]
    with serve({"a.zip": data}) as (url, _):
        out = fetch(f"{url}/a.zip", tmp_path / "a.zip", md5=md5(data),
                    sha256=hashlib.sha256(data).hexdigest(), progress=False)
    assert out.read_bytes() == data and listing(tmp_path) == ["a.zip"]


def test_dropped_connection_keeps_a_prefix_part_and_resumes(tmp_path, omniglot_zips):
    data = omniglot_zips["images_background.zip"]
    dest = tmp_path / "a.zip"
    with serve({"a.zip": data}) as (url, server):
        server.cut["a.zip"] = len(data) // 3
        with pytest.raises(IntegrityError, match=r"stopped after \d+ of \d+ bytes.*resume"):
            fetch(f"{url}/a.zip", dest, md5=md5(data), progress=False)
        part = tmp_path / "a.zip.part"
        assert listing(tmp_path) == ["a.zip.part"] and data.startswith(part.read_bytes())
        assert 0 < part.stat().st_size < len(data)
        fetch(f"{url}/a.zip", dest, md5=md5(data), progress=False)
        assert server.requests[-1] == ("a.zip", f"bytes={len(data) // 3}-")
    assert dest.read_bytes() == data and listing(tmp_path) == ["a.zip"]


def test_wrong_checksum_deletes_the_download(tmp_path, omniglot_zips):
    data = omniglot_zips["images_evaluation.zip"]
    with serve({"a.zip": data}) as (url, _):
        with pytest.raises(IntegrityError, match="md5 .* does not match the expected 0+"):
            fetch(f"{url}/a.zip", tmp_path / "a.zip", md5="0" * 32, progress=False)
    assert listing(tmp_path) == []


def test_truncated_archive_without_checksum_fails_integrity(tmp_path, omniglot_zips):
    data = omniglot_zips["images_background.zip"]
    with serve({"a.zip": data[: len(data) // 2], "b.tar.gz": b"\x1f\x8b" + b"\0" * 50}) as (url, _):
        with pytest.raises(IntegrityError, match="truncated or corrupt"):
            fetch(f"{url}/a.zip", tmp_path / "a.zip", progress=False)
        with pytest.raises(IntegrityError, match="truncated or corrupt"):
            fetch(f"{url}/b.tar.gz", tmp_path / "b.tar.gz", progress=False)
        with pytest.raises(ConnectionError, match="HTTP 404"):
            fetch(f"{url}/missing.zip", tmp_path / "c.zip", progress=False)
    assert listing(tmp_path) == []


def test_download_dataset_then_load(tmp_path, omniglot_zips):
    sums = {k: {"md5": md5(v)} for k, v in omniglot_zips.items()}
    with serve(omniglot_zips) as (url, _):
        paths = download_dataset("omniglot", tmp_path / "data", base_url=url, checksums=sums, progress=False)
    assert [p.name for p in paths] == ["images_background.zip", "images_evaluation.zip"]
    d = load_omniglot(tmp_path / "data", tmp_path / "cache", "test", split_sizes=(4, 2, 2), progress=False)
    assert d.num_classes == 8
    with pytest.raises(FileNotFoundError, match="no official public download"):
        download_dataset("miniimagenet", tmp_path / "data")


def test_cli_download_with_bad_checksum_leaves_nothing(tmp_path, omniglot_zips, capsys):
    bad = dict(omniglot_zips)
    bad["images_evaluation.zip"] = omniglot_zips["images_evaluation.zip"][:-100]  # truncated file
    with serve(bad) as (url, _):
        rc = main(["download", "omniglot", "--mirror", url, "--no-checksum", "--quiet",
                   "--root", str(tmp_path / "data"), "--cache-dir", str(tmp_path / "cache")])
    assert rc == 1 and "truncated or corrupt" in capsys.readouterr().err
    assert listing(tmp_path / "data" / "omniglot") == ["images_background.zip"]  # the good one
    assert listing(tmp_path / "cache") == []


def test_cli_from_path_installs_and_prepares(tmp_path, omniglot_zips, capsys):
    src = tmp_path / "mine"
    src.mkdir()
    for k, v in omniglot_zips.items():
        (src / k).write_bytes(v)
    parser = argparse.ArgumentParser(prog="maml-probe")
    add_data_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "download", "omniglot", "--from", str(src), "--quiet",
                              "--root", str(tmp_path / "data"), "--cache-dir", str(tmp_path / "cache")])
    assert run_data_command(args) == 0
    out = capsys.readouterr().out
    assert "differs from the official md5" in out and "(8, 4, 1, 28, 28) uint8, cache built" in out
    assert listing(tmp_path / "data" / "omniglot") == ["images_background.zip", "images_evaluation.zip"]
    assert len(list((tmp_path / "cache").glob("omniglot-*.npy"))) == 1
    assert main(["info", "--root", str(tmp_path / "data"), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "omniglot: installed" in capsys.readouterr().out
    assert main(["download", "miniimagenet", "--root", str(tmp_path / "data")]) == 1
    assert "--from PATH" in capsys.readouterr().err


def test_install_from_path_checks_before_copying(tmp_path):
    good = make_cifar100(tmp_path / "src")
    bad = truncated_copy(good, tmp_path / "bad" / "cifar-100-python.tar.gz", 0.7)
    with pytest.raises(IntegrityError):
        install_from_path("cifarfs", bad, tmp_path / "data")
    with pytest.raises(IntegrityError, match="sha256"):
        install_from_path("cifarfs", good, tmp_path / "data", sha256="f" * 64)
    assert listing(tmp_path / "data" / "cifar-fs") == []
    folder = make_cifar100(tmp_path / "src2", as_tar=False)
    assert [p.name for p in install_from_path("cifarfs", folder.parent, tmp_path / "data")] == ["cifar-100-python"]
    mini = make_miniimagenet_csv(tmp_path / "mini", {"train": 1, "val": 1, "test": 1}, per_class=2)
    installed = install_from_path("miniimagenet", mini, tmp_path / "data", symlink=True)
    assert sorted(p.name for p in installed) == ["images", "test.csv", "train.csv", "val.csv"]
    assert (tmp_path / "data" / "mini-imagenet" / "images").is_symlink()
    with pytest.raises(FileNotFoundError, match="known form"):
        install_from_path("omniglot", tmp_path / "mini", tmp_path / "data")


def test_python_dash_m_entry_point(tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    done = subprocess.run([sys.executable, "-m", "maml_probe.data", "download", "cifarfs",
                           "--root", str(tmp_path), "--from", str(tmp_path / "nope")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1 and "does not exist" in done.stderr
