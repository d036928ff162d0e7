"""MNIST-shaped data you upload yourself: make an NPZ of 28x28 digit images, upload it, and
train examples/mnist_npz.json on it.

Nothing can be downloaded here, so the images are scikit-learn's 8x8 digits blown up to
28x28 (3x nearest-neighbour, padded), shifted by a pixel or two and slightly noised to make
more of them - train and test from disjoint source digits, split before augmenting. The file has MNIST's layout: x_train (N,28,28) uint8, y_train, x_test, y_test.

    python examples/mnist_npz.py                      # writes mnist_like.npz, uploads, trains
    python examples/mnist_npz.py --samples 20000 --out mnist_like.npz --no-train
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import lab
import netfit


def make_mnist_like(samples: int, seed: int = 0, test_fraction: float = 1 / 7) -> dict[str, np.ndarray]:
    """Train and test images come from disjoint source digits: the 1,797 digits are split first
    (stratified), then each part is augmented on its own, so no test image is a shifted, noised
    copy of a training image (which would make the test accuracy a memory test)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    rng = np.random.default_rng(seed)
    source_train, source_test = train_test_split(np.arange(len(digits.images)), test_size=test_fraction,
                                                 stratify=digits.target, random_state=seed)
    n_test = int(samples * test_fraction)
    x_train, y_train = _augment(digits, rng.choice(source_train, size=samples - n_test), rng)
    x_test, y_test = _augment(digits, rng.choice(source_test, size=n_test), rng)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _augment(digits, picks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    # 8x8 values 0..16 → 24x24 (each pixel a 3x3 block) → 28x28 with a 2-pixel border
    big = np.kron(digits.images[picks], np.ones((3, 3))) * (255 / 16)
    images = np.zeros((len(picks), 28, 28))
    shifts = rng.integers(-2, 3, size=(len(picks), 2))
    for i, (dy, dx) in enumerate(shifts):
        images[i, 2 + dy:26 + dy, 2 + dx:26 + dx] = big[i]
    images += rng.normal(0, 12, size=images.shape)
    return np.clip(images, 0, 255).astype(np.uint8), digits.target[picks].astype(np.int64)


def main(argv: list[str] | None = None) -> int:
    parser = lab.arguments(__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=7000, help="images to make (default %(default)s)")
    parser.add_argument("--out", default="mnist_like.npz", help="NPZ file to write (default %(default)s)")
    parser.add_argument("--no-train", action="store_true", help="only write the file")
    args = parser.parse_args(argv)

    np.savez_compressed(args.out, **make_mnist_like(args.samples))
    print(f"wrote {args.out} ({Path(args.out).stat().st_size:,} bytes, {args.samples} images 28x28)")
    if args.no_train:
        return 0
    with netfit.Client(args.url) as client:
        dataset = client.upload_dataset(args.out, name="mnist-like")
        print(f"uploaded {dataset.id}: {dataset.n_samples} samples {dataset.input_shape}, "
              f"{dataset.n_classes} classes, test split given: {dataset.has_test_split}")
        spec = lab.load_spec("mnist_npz.json", args.epochs)
        spec["dataset"] = {"id": dataset.id}
        job, = lab.run_all(client, [spec])
        print(lab.leaderboard([job]))
    return 0 if job.status == "succeeded" else 1


if __name__ == "__main__":
    raise SystemExit(main())
