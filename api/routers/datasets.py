"""/v1/datasets: upload a CSV or NPZ file (never a pickle) and list uploads."""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, Response, UploadFile

from api.deps import CursorDep, LimitQuery, OneThreadRoute, PrincipalDep, SessionDep, SettingsDep
from api.errors import ApiError, invalid, not_found
from api.responses import errors, link
from db import datasets as db_datasets
from db import retention
from netfit.models import Dataset, Page
from netfit.spec import ID_PATTERN

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=errors(401, 404, 422, 503), route_class=OneThreadRoute)

DatasetId = Annotated[str, Path(pattern=ID_PATTERN, description="the id that POST /v1/datasets returned")]
FORMATS = {".csv": "csv", ".npz": "npz"}
PICKLES = {".pt", ".pth", ".pkl", ".pickle", ".joblib", ".ckpt"}


def printable(text: str) -> str:
    """A client's file name as netfit stores and quotes it: control characters become '?'."""
    return "".join(c if c.isprintable() else "?" for c in text)[:200]


def _format(filename: str) -> str:
    suffix = PurePath(filename or "").suffix.lower()
    if suffix in FORMATS:
        return FORMATS[suffix]
    if suffix in PICKLES:
        raise ApiError(415, f"'{filename}' looks like a pickle/torch file; netfit never unpickles uploads. "
                            "Save your arrays with numpy.savez('data.npz', x=..., y=...) or as a CSV file.")
    raise ApiError(415, f"'{filename}': upload a .csv file (header row, target column) or a .npz file "
                        "with arrays x, y (or x_train, y_train, x_test, y_test)")


@router.post("", status_code=201, response_model=Dataset, summary="Upload a data set (CSV or NPZ)",
             responses={201: {"links": {"GetDataset": link("/v1/datasets/{dataset_id}", "get",
                                                                         dataset_id="$response.body#/id")}},
                        **errors(400, 413, 415)})
def upload_dataset(
    file: Annotated[UploadFile, File(description="a .csv (header row) or .npz (x, y / x_train, y_train, optional x_val, y_val: the validation set, used as is, and x_test, y_test: the test set)")],
    session: SessionDep, tenant: PrincipalDep, settings: SettingsDep,
    name: Annotated[str | None, Form(max_length=200)] = None,
    target: Annotated[str | None, Form(max_length=200, description="CSV: the label column (default: the last; the reply names the one used and its classes)")] = None,
) -> Dataset:
    from netfit.engine.arrays import content_sha256
    from netfit.engine.data import describe as describe_data
    from netfit.engine.data import read_upload, to_npz_bytes
    from netfit.engine.errors import DataError, UnsupportedFile

    filename = printable(file.filename or "upload")
    if name is not None and not name.isprintable():
        detail = {"loc": ["name"], "msg": "use printable text, without control characters"}
        raise invalid(detail, "the upload is invalid")
    fmt = _format(filename)
    content = file.file.read(settings.max_upload_bytes + 1)
    if len(content) > settings.max_upload_bytes:
        raise ApiError(413, f"'{filename}' is larger than the {settings.max_upload_bytes // 2**20} MiB upload limit "
                            "(NETFIT_MAX_UPLOAD_BYTES)")
    try:  # the content decides what the file is; a pickle renamed .csv is still refused
        raw = read_upload(content, filename, target)
        signature = describe_data(raw)
        canonical = to_npz_bytes(raw)
    except UnsupportedFile as exc:
        raise ApiError(415, str(exc), details=[{"loc": ["file"], "msg": str(exc)}]) from None
    except DataError as exc:
        detail = {"loc": ["file"], "msg": str(exc)}
        raise invalid(detail, f"'{filename}' cannot be used") from None
    row = db_datasets.create_dataset(
        session, tenant=tenant, name=name or PurePath(filename).stem, format=fmt, data=canonical,
        n_samples=signature.n_samples, input_shape=list(signature.input_shape), task=signature.task,
        n_classes=signature.n_classes, has_test_split=signature.has_test_split, sha256=content_sha256(raw),
        has_validation_split=signature.has_validation_split,
    )
    reply = Dataset.model_validate(row, from_attributes=True)
    if fmt == "csv":  # say which column became the label: a forgotten `target` silently took the last
        reply.target, reply.classes = target or _last_column(content), raw.classes
    return reply


def _last_column(content: bytes) -> str:
    import csv
    import io

    first = content.decode("utf-8-sig", "replace").split("\n", 1)[0]
    return next(csv.reader(io.StringIO(first)), [""])[-1].strip()


@router.get("", response_model=Page[Dataset], summary="Uploaded data sets, newest first")
def list_datasets(session: SessionDep, tenant: PrincipalDep, cursor: CursorDep, limit: LimitQuery = 50,
                  sha256: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$", description=(
                      "only the uploads with this content digest (the `sha256` an upload returns): "
                      "a client asks before uploading the same arrays again"))] = None) -> Page[Dataset]:
    rows, next_cursor = db_datasets.list_datasets(session, tenant, limit=limit, cursor=cursor, sha256=sha256)
    return Page[Dataset](items=[Dataset.model_validate(d, from_attributes=True) for d in rows], next_cursor=next_cursor)


@router.get("/{dataset_id}", response_model=Dataset, summary="One uploaded data set")
def get_dataset(dataset_id: DatasetId, session: SessionDep, tenant: PrincipalDep) -> Dataset:
    row = db_datasets.get_dataset(session, tenant, dataset_id)
    if row is None:
        raise not_found("data set", dataset_id)
    return Dataset.model_validate(row, from_attributes=True)


@router.delete("/{dataset_id}", status_code=204, summary="Delete an uploaded data set", responses=errors(409))
def delete_dataset(dataset_id: DatasetId, session: SessionDep, tenant: PrincipalDep) -> Response:
    """In use by a queued or running job, or a running sweep: a 409 naming them (cancel them
    first). Jobs that ended keep their metrics and weights. Afterwards the id is a 404."""
    try:
        found = retention.delete_dataset(session, tenant, dataset_id)
    except retention.InUse as exc:
        raise ApiError(409, str(exc)) from None
    if not found:
        raise not_found("dataset", dataset_id)
    return Response(status_code=204)
