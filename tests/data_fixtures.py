"""Small generated datasets in the exact on-disk formats, and a local HTTP file server.

Every generator is deterministic (``numpy.random.default_rng(seed)``) and encodes what the
loaders must recover, so tests can check it:

* Omniglot PNGs: 105x105 1-bit, white background, black ink; character ``c`` draws a
  filled block whose position encodes ``c`` (asymmetric, so rotations are distinguishable).
* mini-ImageNet JPEGs: class ``c`` is a flat colour ``CLASS_COLOURS[c]`` (JPEG keeps flat
  colours within a few levels). Pickle caches hold random pixels, ``class_dict`` indices
  interleaved across classes.
* CIFAR-100: all 100 fine labels; every pixel of an image of label ``l`` is ``l`` except
  pixel 0, which is the image's running index within its class (train first, then test).
"""
from __future__ import annotations

import contextlib
import io
import pickle
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

from maml_probe.data.cifarfs import CIFAR100_FINE_LABELS

OMNIGLOT_LAYOUT = {"images_background": {"Alpha": 3, "Beta_(Greek)": 2},
                   "images_evaluation": {"Gamma": 3}}
CLASS_COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200),
                 (200, 30, 200), (120, 120, 120), (250, 250, 250), (10, 10, 10), (90, 160, 220)]


def omniglot_png(character: int, drawing: int) -> bytes:
    """One 105x105 1-bit PNG: white background, a black block placed by ``character``."""
    im = Image.new("L", (105, 105), 255)
    draw = ImageDraw.Draw(im)
    x0, y0 = 8 + 12 * (character % 6), 8 + 20 * ((character // 6) % 4)
    draw.rectangle([x0 + drawing % 3, y0, x0 + 20 + drawing % 3, y0 + 8], fill=0)   # bar
    draw.rectangle([x0, y0, x0 + 6, y0 + 40], fill=0)                              # stem
    buf = io.BytesIO()
    im.convert("1").save(buf, format="PNG")
    return buf.getvalue()


def make_omniglot(dest: Path, layout: dict = OMNIGLOT_LAYOUT, drawings: int = 4,
                  as_zip: bool = True) -> list[Path]:
    """``images_background.zip`` / ``images_evaluation.zip`` (or folders) in ``dest``.

    Characters are numbered globally from 1 in archive, alphabet, character order.
    """
    dest.mkdir(parents=True, exist_ok=True)
    out, number = [], 0
    for top, alphabets in layout.items():
        files = {}
        for alphabet, count in alphabets.items():
            for j in range(count):
                number += 1
                for d in range(drawings):
                    name = f"{top}/{alphabet}/character{j + 1:02d}/{number:04d}_{d + 1:02d}.png"
                    files[name] = omniglot_png(number - 1, d)
        if as_zip:
            path = dest / f"{top}.zip"
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
                for name, data in files.items():
                    zf.writestr(name, data)
        else:
            path = dest / top
            for name, data in files.items():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                (dest / name).write_bytes(data)
        out.append(path)
    return out


def wnid(c: int) -> str:
    return f"n{10000000 + c:08d}"


def make_miniimagenet_csv(dest: Path, classes: dict[str, int] | None = None,
                          per_class: int = 6, size: int = 84) -> Path:
    """``images/*.jpg`` + ``{train,val,test}.csv``; class ``c`` is flat ``CLASS_COLOURS[c]``."""
    classes = classes or {"train": 3, "val": 2, "test": 2}
    (dest / "images").mkdir(parents=True, exist_ok=True)
    c = 0
    for split, n in classes.items():
        rows = ["filename,label"]
        for _ in range(n):
            for i in range(per_class):
                name = f"{wnid(c)}{i + 1:08d}.jpg"
                Image.new("RGB", (size, size), CLASS_COLOURS[c % len(CLASS_COLOURS)]).save(
                    dest / "images" / name, quality=95)
                rows.append(f"{name},{wnid(c)}")
            c += 1
        (dest / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return dest


def make_miniimagenet_pickles(dest: Path, classes: dict[str, int] | None = None,
                              per_class: int = 5, seed: int = 0) -> dict[str, dict]:
    """``mini-imagenet-cache-{split}.pkl``; returns the pickled dicts for comparison."""
    classes = classes or {"train": 3, "val": 2, "test": 2}
    rng = np.random.default_rng(seed)
    dest.mkdir(parents=True, exist_ok=True)
    out, c = {}, 0
    for split, n in classes.items():
        data = rng.integers(0, 256, (n * per_class, 84, 84, 3), dtype=np.uint8)
        class_dict = {wnid(c + k): list(range(k, n * per_class, n)) for k in range(n)}  # interleaved
        obj = {"image_data": data, "class_dict": class_dict}
        with open(dest / f"mini-imagenet-cache-{split}.pkl", "wb") as f:
            pickle.dump(obj, f, protocol=4)
        out[split], c = obj, c + n
    return out


def cifar100_parts(train_per_class: int = 5, test_per_class: int = 1,
                   seed: int = 0) -> dict[str, dict]:
    """The ``train``, ``test`` and ``meta`` dicts (bytes keys), labels shuffled."""
    rng = np.random.default_rng(seed)
    seen = np.zeros(100, dtype=np.int64)
    parts = {}
    for part, per in (("train", train_per_class), ("test", test_per_class)):
        labels = rng.permutation(np.repeat(np.arange(100), per))
        data = np.repeat(labels[:, None], 3072, axis=1).astype(np.uint8)
        for i, label in enumerate(labels):
            data[i, 0] = seen[label]
            seen[label] += 1
        parts[part] = {b"data": data, b"fine_labels": labels.tolist(),
                       b"coarse_labels": (labels // 5).tolist(), b"filenames": [b"x.png"] * len(labels)}
    parts["meta"] = {b"fine_label_names": [n.encode() for n in CIFAR100_FINE_LABELS],
                     b"coarse_label_names": [b"c%d" % i for i in range(20)]}
    return parts


def make_cifar100(dest: Path, as_tar: bool = True, **kw) -> Path:
    """``cifar-100-python.tar.gz`` (or the ``cifar-100-python/`` folder) in ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    blobs = {k: pickle.dumps(v, protocol=2) for k, v in cifar100_parts(**kw).items()}
    if not as_tar:
        folder = dest / "cifar-100-python"
        folder.mkdir(exist_ok=True)
        for k, b in blobs.items():
            (folder / k).write_bytes(b)
        return folder
    path = dest / "cifar-100-python.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for k, b in blobs.items():
            info = tarfile.TarInfo(f"cifar-100-python/{k}")
            info.size = len(b)
            tf.addfile(info, io.BytesIO(b))
    return path


#: The official archives' character counts (964 background + 659 evaluation = 1623), so a
#: generated copy splits with the loader's default ``split_sizes`` like the real one does.
OMNIGLOT_FULL_COUNTS = {"images_background": 964, "images_evaluation": 659}


def full_omniglot_layout(per_alphabet: int = 50) -> dict:
    """An ``OMNIGLOT_LAYOUT`` with the real character counts, in alphabets of ``per_alphabet``."""
    layout = {}
    for top, total in OMNIGLOT_FULL_COUNTS.items():
        sizes = [per_alphabet] * (total // per_alphabet) + ([total % per_alphabet] if total % per_alphabet else [])
        layout[top] = {f"{top[7:].title()}_{i:02d}": n for i, n in enumerate(sizes)}
    return layout


def make_data_root(root: Path, *, omniglot_drawings: int = 4, mini_per_class: int = 4) -> Path:
    """A data directory as a user would have it, every on-disk dataset generated in its format.

    ``omniglot/`` holds the two official zips with all 1623 characters (``omniglot_drawings``
    each: enough for smoke-scale episodes, so the default 1100/100/423 split applies);
    ``mini-imagenet/`` the csv layout with 6/5/5 flat-colour classes; ``cifar-fs/`` the
    CIFAR-100 archive that CIFAR-FS is cut from.
    """
    make_omniglot(root / "omniglot", full_omniglot_layout(), drawings=omniglot_drawings)
    make_miniimagenet_csv(root / "mini-imagenet", {"train": 6, "val": 5, "test": 5},
                          per_class=mini_per_class)
    make_cifar100(root / "cifar-fs")
    return root


def truncated_copy(src: Path, dest: Path, fraction: float = 0.5) -> Path:
    """The first ``fraction`` of ``src``'s bytes, written to ``dest``."""
    data = src.read_bytes()
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data[: int(len(data) * fraction)])
    return dest


class FileServer:
    """Serves ``files`` (name -> bytes) over HTTP with ``Range`` support.

    ``cut[name] = n`` announces the full ``Content-Length`` but closes after ``n`` bytes of
    the body (a dropped connection). ``requests`` logs ``(name, Range header)``.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []


@contextlib.contextmanager
def serve(files: dict[str, bytes]) -> Iterator[tuple[str, FileServer]]:
    """Run a ``FileServer`` on 127.0.0.1 (ephemeral port) in a thread; yields (base URL, it)."""
    state = FileServer()
    state.files.update(files)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:  # noqa: N802
            name = self.path.lstrip("/")
            rng = self.headers.get("Range")
            state.requests.append((name, rng))
            if name not in state.files:
                self.send_error(404)
                return
            data = state.files[name]
            start = int(rng.split("=")[1].split("-")[0]) if rng else 0
            if start >= len(data) and rng:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206 if rng else 200)
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            body = data[start:]
            if name in state.cut:
                body = body[: max(0, state.cut.pop(name) - start)]
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
