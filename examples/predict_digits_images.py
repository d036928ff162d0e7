"""The digits model on images: upload 8x8 grey images as an NPZ, train a small conv net,
then send images (arrays of 8x8 pixels, as the data set had them) to /predict.

    python examples/predict_digits_images.py
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import lab
import netfit
import numpy as np
from sklearn.datasets import load_digits

CONV = {"name": "digits-conv", "preprocess": {"features": "scale"}, "split": {"validation": 0.2, "test": 0.2, "seed": 0},
        "model": {"layers": [{"type": "conv2d", "filters": 8, "kernel_size": 3, "padding": "same", "activation": "relu"},
                             {"type": "maxpool2d"}, {"type": "flatten"}, {"type": "linear", "units": 10}]},
        "training": {"epochs": 40, "batch_size": 32, "optimizer": {"type": "adam", "lr": 0.01},
                     "early_stopping": {"monitor": "val_loss", "patience": 5}}}


def main(argv: list[str] | None = None) -> int:
    args = lab.arguments(__doc__.splitlines()[0]).parse_args(argv)
    digits = load_digits()
    images, labels = digits.images.astype(np.uint8), digits.target  # (1797, 8, 8), pixels 0..16
    with netfit.Client(args.url) as client, tempfile.TemporaryDirectory() as tmp:
        buf = io.BytesIO()
        np.savez(buf, x=images[:-10], y=labels[:-10])  # the last 10 images are kept back
        (Path(tmp) / "digits.npz").write_bytes(buf.getvalue())
        dataset = client.upload_dataset(Path(tmp) / "digits.npz", name="digits-images")
        spec = {**CONV, "dataset": {"id": dataset.id}}
        if args.epochs:
            spec["training"] = {**spec["training"], "epochs": args.epochs}
        job = client.wait(client.submit(spec).id)
        print(f"job {job.id}: {job.status}, test {job.test_metrics}")
        out = client.predict(job.id, images[-10:])  # ten images it never saw
        print("predicted:", " ".join(out["predictions"]))
        print("true:     ", " ".join(str(d) for d in labels[-10:]))
    return 0 if job.status == "succeeded" else 1


if __name__ == "__main__":
    raise SystemExit(main())
