"""Where a job's data set comes from: a built-in, a synthetic generator or an upload."""

from __future__ import annotations

from netfit.spec import MAX_SAMPLE_EPOCHS, DatasetRef, JobSpec

from ..arrays import DataSignature, RawArrays, describe
from ..errors import DataError, SpecError
from ..formats import from_npz_bytes
from ..downloads import Downloads
from .builtin import SIGNATURES, builtin
from .synthetic import synthetic, synthetic_signature


def load_raw(dataset: DatasetRef, uploaded: bytes | None = None, downloads: Downloads | None = None) -> RawArrays:
    """`downloads`: where downloaded built-ins (mnist, fashion_mnist) are cached and fetched from."""
    if dataset.builtin is not None:
        return builtin(dataset.builtin, downloads)
    if dataset.synthetic is not None:
        return synthetic(dataset.synthetic)
    if uploaded is None:
        raise DataError(f"data set '{dataset.id}' was not supplied; upload it first (POST /v1/datasets)")
    return from_npz_bytes(uploaded)


def signature_of(spec: JobSpec, uploaded: bytes | None = None, stored: DataSignature | None = None) -> DataSignature:
    """What the data looks like, and whether the job's epochs x samples stay within the limit.
    `stored`: an upload's signature as recorded when it was read, so that its blob need not be."""
    if stored is not None:
        signature = stored
    elif spec.dataset.synthetic is not None:
        signature = synthetic_signature(spec.dataset.synthetic)
    elif spec.dataset.builtin in SIGNATURES:  # known without downloading
        signature = SIGNATURES[spec.dataset.builtin]
    else:
        signature = describe(load_raw(spec.dataset, uploaded))
    epochs = spec.training.epochs
    if epochs * signature.n_samples > MAX_SAMPLE_EPOCHS:
        raise SpecError.at(["training", "epochs"], f"{epochs:,} epochs x {signature.n_samples:,} samples is more than "
                           f"{MAX_SAMPLE_EPOCHS:,} sample passes; use at most "
                           f"{MAX_SAMPLE_EPOCHS // signature.n_samples:,} epochs or fewer samples")
    return signature

