"""The netfit SDK: a typed client for the HTTP API.

    import netfit

    with netfit.Client() as client:                  # NETFIT_API_URL, NETFIT_API_KEY
        job = client.submit("examples/iris_two_layers_small.json")
        for event in client.follow(job.id):          # live epochs and status changes
            print(event)
        model = client.load_model(job.id)            # the trained torch module

Every non-2xx answer raises one error type, `NetfitError`, built from the server's JSON body.
A GET answered with an ETag (a job, its metrics, its checkpoints) is kept with its body and asked
again with If-None-Match: a finished job's second read is a 304 without a body.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from netfit.errors import NetfitError
from netfit.lru import BytesLRU
from netfit.models import (
    Checkpoint, Dataset, EpochLayerStats, EpochMetrics, Job, JobItem, Page, Sweep, SweepImportance, Trial, Usage,
    WorkerInfo,
)
from netfit.spec import JobSpec
from netfit.sse import EpochEvent, JobEvent, StatusEvent, job_event, parse_sse

if TYPE_CHECKING:
    from netfit.fit import Run

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
CHECKPOINT_KINDS = ("best", "last")
ETAG_CACHE_BYTES = 64 * 1024 * 1024  # a Client's memory for bodies it may be answered 304 for
CURVE_FORMATS = ("png", "svg")


class Client:
    """A netfit API client.

    The server is `base_url`, else the base_url of the `http` client you pass, else
    $NETFIT_API_URL, else http://127.0.0.1:8000. A client passed as `http` (for your own
    transport, proxies or headers) is not closed here.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        http: httpx.Client | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
    ):
        own_base = str(http.base_url) if http is not None else ""
        self.base_url = (base_url or own_base or os.environ.get("NETFIT_API_URL") or DEFAULT_URL).rstrip("/")
        api_key = api_key if api_key is not None else os.environ.get("NETFIT_API_KEY")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=timeout)
        self._tagged = BytesLRU(ETAG_CACHE_BYTES)  # URL -> the GET answer that carried an ETag

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"netfit.Client({self.base_url!r})"

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        request = self._http.build_request(method, self._url(path), headers=self._headers, **kwargs)
        kept = self._tagged.get(str(request.url)) if method == "GET" else None
        if kept is not None:
            request.headers["If-None-Match"] = kept.headers["etag"]
        try:
            response = self._http.send(request)
        except httpx.TransportError as exc:
            raise NetfitError(0, "unreachable", f"cannot reach the netfit API at {self.base_url}: {exc}; "
                              "is it running (`netfit serve`) and is NETFIT_API_URL right?") from None
        if response.status_code == 304 and kept is not None:
            return kept  # unchanged since the body we hold
        if response.is_error:
            raise NetfitError.from_response(response)
        if method == "GET" and "etag" in response.headers:
            self._tagged.put(str(request.url), response, len(response.content))
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    def _items(self, model: type[T], path: str, cap: int | None = None, **params: Any) -> Iterator[T]:
        """Every item of a list endpoint, following `next_cursor` page by page; `cap` bounds how
        many are yielded."""
        yielded = 0
        while True:
            page = Page[model].model_validate(self._json("GET", path, params=params))
            for item in page.items:
                if cap is not None and yielded >= cap:
                    return
                yield item
                yielded += 1
            if not page.next_cursor or not page.items:
                return
            params["cursor"] = page.next_cursor

    # ------------------------------------------------------------------ jobs

    def submit(self, spec: dict | str | Path | JobSpec) -> Job:
        """Queue a training job: a spec dict, a JobSpec, a path to a JSON file or a JSON string."""
        return Job.model_validate(self._json("POST", "/v1/jobs", json=_spec_document(spec)))

    def job(self, job_id: str) -> Job:
        return Job.model_validate(self._json("GET", f"/v1/jobs/{job_id}"))

    def jobs(self, status: str | None = None, limit: int | None = None, page_size: int = 50) -> Iterator[JobItem]:
        """Jobs newest first, following the pages; `limit` caps how many are yielded. Each is a
        JobItem (status, epochs, best and test metrics, times); `job(id)` has the whole job."""
        filters = {"status": status} if status else {}
        return self._items(JobItem, "/v1/jobs", limit, limit=min(page_size, limit) if limit else page_size, **filters)

    def metrics(self, job_id: str) -> list[EpochMetrics]:
        """One row per finished epoch, in order."""
        return list(self._items(EpochMetrics, f"/v1/jobs/{job_id}/metrics"))

    def metrics_columns(self, job_id: str) -> dict[str, list]:
        """The metrics as columns (`{"epoch": [...], "val_loss": [...]}`), ready to plot."""
        return metrics_columns(self.metrics(job_id))

    def layer_stats(self, job_id: str) -> list[EpochLayerStats]:
        """Per epoch, each layer's max |w|, ||w|| and gradient norm (epochs without them left out)."""
        return list(self._items(EpochLayerStats, f"/v1/jobs/{job_id}/layer-stats"))

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.5) -> Job:
        """Block until the job is succeeded, failed or cancelled; TimeoutError after `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.done:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job.status} after {timeout} s")
            time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))

    def follow(self, job_id: str, last_event_id: str | None = None, retries: int = 5) -> Iterator[JobEvent]:
        """Yield the job's events live (EpochEvent, StatusEvent) until it ends.

        A dropped connection is resumed with `Last-Event-ID`, so no event is lost or repeated.
        """
        failures = 0
        while True:
            headers = {**self._headers, "Accept": "text/event-stream"}
            if last_event_id is not None:
                headers["Last-Event-ID"] = last_event_id
            got_any = dropped = False
            try:
                # the server sends a keep-alive every 15 s: a minute of silence is a dead connection
                with self._http.stream("GET", self._url(f"/v1/jobs/{job_id}/events"), headers=headers,
                                       timeout=httpx.Timeout(30.0, connect=5.0, read=60.0)) as response:
                    if response.is_error:
                        response.read()
                        raise NetfitError.from_response(response)
                    for raw in parse_sse(response.iter_lines()):
                        if raw.id is not None:
                            last_event_id = raw.id
                        event = job_event(raw)
                        if event is None:
                            continue
                        got_any, failures = True, 0
                        yield event
                        if isinstance(event, StatusEvent) and event.done:
                            return
            except httpx.TransportError:
                dropped = True
            # The stream ended before the job's last event: resume after the last event seen,
            # unless the server closed a stream that brought nothing new because the job has ended.
            if not got_any and not dropped and self.job(job_id).done:
                return
            failures += 1
            if failures > retries:
                raise NetfitError(0, "stream_lost", f"lost the event stream of job {job_id} {retries} times "
                                  f"in a row; see `netfit status {job_id}`")
            time.sleep(min(5.0, 0.25 * 2**failures))  # back off before reconnecting

    def cancel(self, job_id: str) -> Job:
        return Job.model_validate(self._json("POST", f"/v1/jobs/{job_id}/cancel"))

    # ------------------------------------------------------------------ checkpoints and curves

    def checkpoints(self, job_id: str) -> list[Checkpoint]:
        return list(self._items(Checkpoint, f"/v1/jobs/{job_id}/checkpoints"))

    def checkpoint_bytes(self, job_id: str, which: str = "best") -> bytes:
        """The weights as safetensors bytes (epoch and metrics in the metadata)."""
        if which not in CHECKPOINT_KINDS:
            raise ValueError(f"which must be one of {CHECKPOINT_KINDS}, not {which!r}")
        return self._request("GET", f"/v1/jobs/{job_id}/checkpoints/{which}").content

    def download_checkpoint(self, job_id: str, which: str = "best", path: str | Path | None = None) -> Path:
        """Save the weights to `path` (default `<job id>-<which>.safetensors`) and return it."""
        target = Path(path) if path is not None else Path(f"{job_id}-{which}.safetensors")
        target.write_bytes(self.checkpoint_bytes(job_id, which))
        return target

    def load_model(self, job_id: str, which: str = "best", raw_inputs: bool = True):
        """The trained network as a torch module in eval mode, rebuilt here from the job's
        spec and summary and the downloaded safetensors weights.

        raw_inputs=True: the module takes raw features and applies the job's preprocessing
        (statistics of its training split, kept in the checkpoint) first; `.network` is the
        bare network. raw_inputs=False: the bare network, for inputs already preprocessed.
        Needs torch and the engine (a netfit checkout with the `server` extra).
        """
        return _rebuild_model(self.job(job_id), self.checkpoint_bytes(job_id, which), raw_inputs)

    def predict(self, job_id: str, instances: Any, checkpoint: str = "best") -> dict[str, Any]:
        """Predictions of the trained model for raw instances (rows of features, or images in the
        data set's shape; lists or anything with .tolist(), such as a numpy array):
        {"predictions", "probabilities", "classes", "checkpoint"} (values for regression)."""
        if checkpoint not in CHECKPOINT_KINDS:
            raise ValueError(f"checkpoint must be one of {CHECKPOINT_KINDS}, not {checkpoint!r}")
        rows = instances.tolist() if hasattr(instances, "tolist") else list(instances)
        return self._json("POST", f"/v1/jobs/{job_id}/predict", params={"checkpoint": checkpoint},
                          json={"instances": rows})

    def export(self, job_id: str, path: str | Path, checkpoint: str = "best", fmt: str = "onnx") -> Path:
        """Save the network with its preprocessing as an ONNX model (raw float32 inputs, any
        batch size, class names in its metadata) to `path`, and return it."""
        content = self._request("GET", f"/v1/jobs/{job_id}/export", params={"format": fmt, "checkpoint": checkpoint},
                                timeout=httpx.Timeout(300.0, connect=5.0)).content
        target = Path(path)
        target.write_bytes(content)
        return target

    def tensorboard(self, job_id: str, logdir: str | Path = "runs") -> Path:
        """Write the job's TensorBoard event file into logdir/<job name or id>/ and return it;
        several jobs in one logdir are several runs (`tensorboard --logdir runs`)."""
        from netfit.tensorboard import write_run

        return write_run(logdir, self.job(job_id), self._request("GET", f"/v1/jobs/{job_id}/tensorboard").content)

    def to_mlflow(self, job_ids: str | list[str], tracking_uri: str, experiment: str = "netfit") -> list[str]:
        """Log each job as an MLflow run (its flattened spec as params, every epoch's metrics,
        tags, the model as ONNX); returns the run ids. Needs `pip install 'netfit[mlflow]'`."""
        from netfit.mlflow_export import to_mlflow

        return to_mlflow(self, [job_ids] if isinstance(job_ids, str) else list(job_ids), tracking_uri, experiment)

    def curves(self, job_id: str, path: str | Path | None = None, fmt: str | None = None) -> bytes:
        """The learning curves as PNG or SVG bytes (format from `fmt`, else from `path`'s suffix,
        else SVG); also written to `path` when given."""
        return self._image(f"/v1/jobs/{job_id}/curves", path, fmt)

    def layers_plot(self, job_id: str, path: str | Path | None = None, fmt: str | None = None) -> bytes:
        """Each layer's max |w| and gradient norm vs epoch, as PNG or SVG bytes (the format
        chosen as for curves); also written to `path` when given."""
        return self._image(f"/v1/jobs/{job_id}/layers", path, fmt)

    def _image(self, stem: str, path: str | Path | None, fmt: str | None) -> bytes:
        fmt = (fmt or (Path(path).suffix.lstrip(".") if path else "") or "svg").lower()
        if fmt not in CURVE_FORMATS:
            raise ValueError(f"plot format must be one of {CURVE_FORMATS}, not {fmt!r}; name the file .png or .svg")
        content = self._request("GET", f"{stem}.{fmt}").content
        if path is not None:
            Path(path).write_bytes(content)
        return content

    # ------------------------------------------------------------------ data sets

    def upload_dataset(self, path: str | Path, name: str | None = None, target: str | None = None) -> Dataset:
        """Upload a CSV (`target`: the label column, default the last) or an NPZ."""
        path = Path(path)
        form = {k: v for k, v in (("name", name or path.stem), ("target", target)) if v is not None}
        with path.open("rb") as fh:
            body = self._json("POST", "/v1/datasets", data=form, files={"file": (path.name, fh)})
        return Dataset.model_validate(body)

    def dataset(self, dataset_id: str) -> Dataset:
        return Dataset.model_validate(self._json("GET", f"/v1/datasets/{dataset_id}"))

    # ------------------------------------------------------------------ sweeps

    def sweep(self, request: dict | str | Path) -> Sweep:
        """Start a sweep (examples/README.md, "Sweeps"): a dict, a path to a JSON file or a JSON string."""
        return Sweep.model_validate(self._json("POST", "/v1/sweeps", json=_spec_document(request)))

    def get_sweep(self, sweep_id: str) -> Sweep:
        return Sweep.model_validate(self._json("GET", f"/v1/sweeps/{sweep_id}"))

    def sweeps(self, limit: int = 50) -> list[Sweep]:
        """The newest `limit` sweeps, newest first."""
        return list(self._items(Sweep, "/v1/sweeps", limit, limit=limit))

    def trials(self, sweep_id: str) -> list[Trial]:
        """The leaderboard: every trial, best objective value first."""
        return list(self._items(Trial, f"/v1/sweeps/{sweep_id}/trials"))

    def importance(self, sweep_id: str) -> SweepImportance:
        return SweepImportance.model_validate(self._json("GET", f"/v1/sweeps/{sweep_id}/importance"))

    def cancel_sweep(self, sweep_id: str) -> Sweep:
        return Sweep.model_validate(self._json("POST", f"/v1/sweeps/{sweep_id}/cancel"))

    def wait_sweep(self, sweep_id: str, timeout: float | None = None, poll: float = 1.0) -> Sweep:
        """Poll until the sweep ends; TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            sweep = self.get_sweep(sweep_id)
            if sweep.done:
                return sweep
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"sweep {sweep_id} still {sweep.status} after {timeout} s")
            time.sleep(poll)

    def datasets(self, sha256: str | None = None) -> list[Dataset]:
        """Every uploaded data set, newest first; `sha256`: only those with that content digest."""
        return list(self._items(Dataset, "/v1/datasets", limit=200, **({"sha256": sha256} if sha256 else {})))

    # ------------------------------------------------------------------ fit (netfit.fit)

    def fit(self, model: Any, x: Any = None, y: Any = None, **options: Any) -> Run:
        """Train `model` on (x, y) on the service, as Keras' model.fit reads; returns a Run.

        model: a list of layer dicts (PyTorch or Keras words), a model dict {"layers": ...}, a
        whole job spec (dict or JobSpec: its other sections are the defaults), a keras.Model
        (Sequential or Functional), a Keras config dict or a .keras/.json file, or a
        torch.nn.Sequential. Only the architecture is carried, never weights.
        x, y: numpy arrays, torch tensors, lists, or a pandas DataFrame with y a Series or the
        target column's name (or target=); integer or text labels are classes, floats a
        regression; Keras' one-hot labels and (N, H, W, C) images are converted. Or x alone: a
        data set id, a Dataset, or a built-in name ("iris", "digits", "mnist", ...).
        Keywords (Keras' names where the concept is the same): validation_split (0.2: a seeded,
        stratified share of x, y), validation_data=(x_val, y_val) (the validation set, used as is;
        not with validation_split), test_data=(x_test, y_test), test_split, epochs, batch_size,
        shuffle (True: a new seeded order every epoch; False: one order every epoch, x's own when
        nothing is drawn from x, i.e. with validation_data), optimizer ("adam", a dict or
        a Keras optimizer), learning_rate, weight_decay, loss (Keras or netfit names), task,
        early_stopping (True, a patience or a dict), callbacks ([keras EarlyStopping]),
        preprocess ("standardize", "minmax", "scale" or a dict), target, lr_schedule, grad_clip,
        label_smoothing, seed, device, name, verbose (0, 1, 2), wait (True: show the progress
        until the job ends; False: return at once). An unknown keyword is a TypeError.
        """
        from netfit.fit import fit

        return fit(self, model, x, y, **options)

    def run(self, job_id: str) -> Run:
        """A Run for a job started earlier (to wait on it again, read its history or predict)."""
        from netfit.fit import Run

        return Run(self, self.job(job_id))

    # the shared cluster: deletes (a 409 NetfitError names what to cancel first), workers, usage

    def delete_job(self, job_id: str) -> None:
        """Delete an ended job with its metrics, events and weights."""
        self._request("DELETE", f"/v1/jobs/{job_id}")

    def delete_sweep(self, sweep_id: str) -> None:
        """Delete an ended sweep with all its trials."""
        self._request("DELETE", f"/v1/sweeps/{sweep_id}")

    def delete_dataset(self, dataset_id: str) -> None:
        """Delete an uploaded data set no queued or running job uses."""
        self._request("DELETE", f"/v1/datasets/{dataset_id}")

    def workers(self) -> list[WorkerInfo]:
        """The live workers and what they train (another tenant's job ids are not shown)."""
        return [WorkerInfo.model_validate(w) for w in self._json("GET", "/v1/workers")["items"]]

    def usage(self) -> Usage:
        """Your tenant's running and queued jobs and the bytes it keeps."""
        return Usage.model_validate(self._json("GET", "/v1/usage"))


def metrics_columns(rows: list[EpochMetrics]) -> dict[str, list]:
    """Rows → columns, keeping only the columns that have a value somewhere."""
    names = [n for n in EpochMetrics.model_fields if any(getattr(r, n) is not None for r in rows)]
    return {n: [getattr(r, n) for r in rows] for n in names}


def _rebuild_model(job: Job, weights: bytes, raw_inputs: bool):
    """safetensors → torch module through the one loader (netfit.engine.inference.load_model);
    the job's spec and summary rebuild a checkpoint from before checkpoints described themselves."""
    try:
        from netfit.engine.inference import load_model
    except ImportError as exc:
        raise ImportError(f"load_model needs the engine extra (torch and netfit.engine): {exc}") from None
    if job.summary is None:
        raise NetfitError(0, "no_summary", f"job {job.id} has no model summary to rebuild the network from")
    return load_model(weights, spec=job.spec, summary=job.summary.model_dump(mode="json"), raw_inputs=raw_inputs)


def _spec_document(spec: dict | str | Path | JobSpec) -> dict:
    """What to POST. Dicts and files go as written: the server validates them and its 422 names
    the field; only a file that is not JSON is refused here."""
    if isinstance(spec, JobSpec):
        return spec.model_dump(mode="json", exclude_unset=True)
    if isinstance(spec, dict):
        return spec
    text, source = str(spec), "the spec string"
    if isinstance(spec, Path) or not text.lstrip().startswith("{"):
        path = Path(spec)
        try:
            text, source = path.read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise ValueError(f"cannot read the spec file {path}: {exc.strerror or exc}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(document, dict):
        raise ValueError(f"{source} must hold a JSON object (the job spec), not {type(document).__name__}")
    return document


__all__ = ["Client", "NetfitError", "EpochEvent", "StatusEvent", "metrics_columns"]
