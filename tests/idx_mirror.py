"""A local stand-in for the MNIST mirrors: small IDX files made here (100 training and 20 test
images of 28x28), served by http.server on 127.0.0.1 (port 0), with a count of the requests
per path and switches to hold, corrupt, truncate or refuse them. The test points netfit at it
with NETFIT_DATASET_MIRROR and gives the digests of these files through the test-only
NETFIT_DATASET_MANIFEST; the published digests stay what real mirrors are checked against."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import struct
import threading
from collections import Counter
from pathlib import Path

import numpy as np

FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
SETS = ("mnist", "fashion_mnist")


def idx_bytes(array: np.ndarray) -> bytes:
    code = {np.uint8: 0x08, np.int32: 0x0C}[array.dtype.type]
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def make_set(n_train: int = 100, n_test: int = 20, seed: int = 0) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    """({file name: gzip bytes}, the arrays): each class draws a bright square at its own place,
    so that a small network can learn it."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n, dtype=np.uint8) % 10
        images = rng.integers(0, 40, (n, 28, 28), dtype=np.uint8)
        for i, c in enumerate(labels):
            row, col = divmod(int(c), 5)
            images[i, 4 + 10 * row:12 + 10 * row, 1 + 5 * col:6 + 5 * col] = 255
        arrays[f"{prefix}-images-idx3-ubyte.gz"], arrays[f"{prefix}-labels-idx1-ubyte.gz"] = images, labels
    return {f: gzip.compress(idx_bytes(a), mtime=0) for f, a in arrays.items()}, arrays


def write_manifest(path: Path, files: dict[str, bytes]) -> Path:
    digests = {f: hashlib.sha256(b).hexdigest() for f, b in files.items()}
    path.write_text(json.dumps({name: digests for name in SETS}))
    return path


class Mirror:
    """Serves `files` at /<prefix>/<set>/<file> for every prefix and set given; `mode[prefix]`
    is "ok", "corrupt" (one byte changed), "truncated" (half the file) or "down" (503).
    `hold` (an Event), when set by the test before a request, keeps every response waiting until
    the test sets `release`."""

    def __init__(self, files: dict[str, bytes], prefixes: tuple[str, ...] = ("a",), sets: tuple[str, ...] = SETS):
        self.files, self.mode = files, {p: "ok" for p in prefixes}
        self.requests: Counter[str] = Counter()
        self.held, self.release = threading.Event(), threading.Event()
        self.release.set()
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                mirror.requests[self.path] += 1
                parts = self.path.strip("/").split("/")
                if len(parts) != 3 or parts[0] not in mirror.mode or parts[1] not in sets or parts[2] not in files:
                    self.send_error(404)
                    return
                mirror.held.set()
                mirror.release.wait(30)
                mode, body = mirror.mode[parts[0]], files[parts[2]]
                if mode == "down":
                    self.send_error(503)
                    return
                if mode == "corrupt":
                    body = body[:-10] + bytes([body[-10] ^ 0xFF]) + body[-9:]
                elif mode == "truncated":
                    body = body[:len(body) // 2]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def url(self, prefix: str = "a") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{prefix}"

    def served(self, prefix: str = "a", name: str = "mnist") -> dict[str, int]:
        """How often each file was asked for under prefix/name."""
        return {f: self.requests[f"/{prefix}/{name}/{f}"] for f in FILES}

    def __enter__(self) -> Mirror:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
