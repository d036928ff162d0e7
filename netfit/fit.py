"""`Client.fit`: a network and data in, a trained model out, as Keras' `model.fit` reads.

    run = client.fit(model, x_train, y_train, validation_split=0.2, epochs=100, batch_size=32,
                     early_stopping={"patience": 10}, test_data=(x_test, y_test))
    run = client.fit(model, x_train, y_train, validation_data=(x_val, y_val), shuffle=False)
    run.history["val_loss"]; run.model(); run.predict(x); run.plot()

The model goes through netfit.convert (layer dicts, a spec, Keras, torch); the data is packed
in memory as an NPZ and uploaded once: its content digest is asked for first
(GET /v1/datasets?sha256=), so the same arrays again upload nothing. Float images that are
exactly k/255 travel as uint8 with `preprocess.features = "scale"` (a quarter of the bytes,
the same values in training). Progress is netfit.progress's, in a terminal or a notebook.
"""

from __future__ import annotations

import base64
import copy
import html
import io
import json
import sys
from collections.abc import Iterator
from typing import Any

import httpx

from netfit.convert import Converted, convert
from netfit.models import Dataset, Job
from netfit.progress import Progress, in_notebook, num
from netfit.spec import did_you_mean
from netfit.sse import EpochEvent, JobEvent, StatusEvent

Client = Any  # netfit.client.Client, which imports this module (not the other way round)

# the service reads, checks and stores an upload before it answers: tens of seconds for MNIST-sized arrays
UPLOAD_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
# fit's keywords and their defaults (None: the spec's own default, or the given spec's value)
OPTIONS: dict[str, Any] = {
    "validation_split": None, "validation_data": None, "test_data": None, "test_split": None,
    "epochs": None, "batch_size": None, "optimizer": None, "learning_rate": None, "weight_decay": None,
    "loss": None, "task": None, "early_stopping": None, "callbacks": None, "shuffle": None,
    "preprocess": None, "target": None, "lr_schedule": None, "grad_clip": None, "label_smoothing": None,
    "seed": None, "device": None, "name": None, "verbose": 1, "wait": True,
}
# Keras keywords with no netfit counterpart, and why
KERAS_ONLY = {
    "class_weight": "netfit weighs every sample alike", "sample_weight": "netfit weighs every sample alike",
    "steps_per_epoch": "an epoch is always one pass over the training split",
    "validation_steps": "validation always covers the whole validation split",
    "validation_freq": "netfit validates after every epoch", "initial_epoch": "a job starts at epoch 1",
    "validation_batch_size": "netfit validates with batch_size",
}
LOSSES = {"sparse_categorical_crossentropy": "cross_entropy", "categorical_crossentropy": "cross_entropy",
          "crossentropy": "cross_entropy", "cross_entropy": "cross_entropy", "binary_crossentropy": "bce",
          "bce": "bce", "mse": "mse", "mean_squared_error": "mse", "mae": "mae", "mean_absolute_error": "mae",
          "huber": "huber", "huber_loss": "huber"}
# Keras' metric names -> netfit's (Keras calls the training metrics by their bare names)
MONITORS = {"loss": "train_loss", "accuracy": "train_accuracy", "acc": "train_accuracy",
            "val_acc": "val_accuracy", "rmse": "train_rmse", "mae": "train_mae"}
# netfit's metric columns -> the History keys Keras users read
HISTORY_KEYS = {"train_loss": "loss", "train_accuracy": "accuracy", "train_rmse": "rmse", "train_mae": "mae",
                "val_loss": "val_loss", "val_accuracy": "val_accuracy", "val_rmse": "val_rmse", "val_mae": "val_mae",
                "lr": "learning_rate"}


def fit(client: Client, model: Any, x: Any = None, y: Any = None, **options: Any) -> Run:
    """See Client.fit."""
    opts = _options(options)
    converted = convert(model)  # ConversionError before anything is uploaded
    spec = _spec(converted, opts)
    base_split = ((converted.spec or {}).get("split") or {})
    _validate(spec)
    data = _data(client, x, y, opts, converted, spec.get("preprocess", {}).get("features", "none"))
    spec["dataset"] = data.ref
    if data.scaled and spec.get("preprocess", {}).get("features", "none") == "none":
        spec["preprocess"] = {"features": "scale"}
    if data.has_test or (data.arrays and opts["test_split"] is None and "test" not in base_split):
        spec["split"]["test"] = 0.0  # arrays: as in Keras, a test set is what test_data gives
    split = spec["split"]
    drawn = split.get("validation", 0.2) > 0 or (split.get("test", 0.2) > 0 and not data.has_test)
    if spec.get("training", {}).get("shuffle") is False and data.arrays and drawn:
        data.notes.append("shuffle=False: the batches keep one order every epoch, the order the seeded split leaves "
                          "(shares are drawn from x); give validation_data (and test_data) to train in x's own order")
    verbose = opts["verbose"]
    if verbose:
        for note in converted.notes + data.notes:
            print(f"note: {note}", flush=True)
    job = client.submit(spec)
    run = Run(client, job, uploaded_bytes=data.uploaded_bytes, dataset_id=data.ref.get("id"),
              channels_last=converted.channels_last, x_scale=255.0 if data.scaled else None)
    if opts["wait"]:
        run.wait(verbose=verbose)
    return run


# --------------------------------------------------------------------------- keywords and the spec


def _options(given: dict[str, Any]) -> dict[str, Any]:
    for key in given:
        if key in KERAS_ONLY:
            raise TypeError(f"fit() does not take Keras' '{key}': {KERAS_ONLY[key]}")
        if key not in OPTIONS:
            guess = did_you_mean(key, [*OPTIONS, *KERAS_ONLY])
            hint = f"; did you mean '{guess}'?" if guess else f"; fit() takes {', '.join(OPTIONS)}"
            raise TypeError(f"fit() got an unexpected keyword argument '{key}'{hint}")
    opts = {**OPTIONS, **given}
    if opts["validation_data"] is not None and opts["validation_split"] is not None:
        raise ValueError("validation_data is the validation set; give it or validation_split (a share drawn from "
                         "x, y), not both")
    if opts["shuffle"] is not None and not isinstance(opts["shuffle"], bool):
        raise TypeError(f"shuffle must be True (a new seeded order every epoch) or False (the batches in x's "
                        f"order), not {opts['shuffle']!r}")
    if opts["verbose"] not in (0, 1, 2):
        raise ValueError(f"verbose must be 0 (silent), 1 (a bar, a live chart in a notebook) or 2 (a line per "
                         f"epoch), not {opts['verbose']!r}")
    return opts


def _spec(converted: Converted, opts: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(converted.spec) if converted.spec else {}
    spec.pop("dataset", None)  # the data given to fit, set after the upload
    spec["model"] = converted.model
    if opts["name"] is not None:
        spec["name"] = opts["name"]
    split = spec.setdefault("split", {})
    if opts["validation_data"] is not None:
        split["validation"] = 0.0  # the given set is the validation set, as in Keras: nothing drawn from x
    elif opts["validation_split"] is not None:
        split["validation"] = opts["validation_split"]
    # unsaid: the service's default, a 0.2 share, or 0 on an upload that brings x_val, y_val
    if opts["test_split"] is not None:
        split["test"] = opts["test_split"]
    if opts["preprocess"] is not None:
        p = opts["preprocess"]
        spec["preprocess"] = {"features": p} if isinstance(p, str) else dict(p)
    training = spec.setdefault("training", {})
    for key in ("epochs", "batch_size", "shuffle", "task", "lr_schedule", "grad_clip", "label_smoothing", "seed",
                "device"):
        if opts[key] is not None:
            training[key] = opts[key]
    if opts["loss"] is not None:
        loss = str(opts["loss"]).lower()
        if loss not in LOSSES:
            guess = did_you_mean(loss, LOSSES)
            raise ValueError(f"loss {opts['loss']!r} is not one netfit knows" + (f"; did you mean '{guess}'?" if guess
                             else f"; use one of {', '.join(LOSSES)}"))
        training["loss"] = LOSSES[loss]
        if LOSSES[loss] == "bce":
            training.setdefault("task", "binary")
    optimizer = _optimizer(opts["optimizer"], training.get("optimizer"))
    if opts["learning_rate"] is not None:
        optimizer["lr"] = opts["learning_rate"]
    if opts["weight_decay"] is not None:
        optimizer["weight_decay"] = opts["weight_decay"]
    if optimizer:
        training["optimizer"] = optimizer
    stopping = _early_stopping(opts["early_stopping"], opts["callbacks"])
    if stopping is not None:
        training["early_stopping"] = stopping
    elif opts["early_stopping"] is False:
        training.pop("early_stopping", None)
    return spec


def _optimizer(value: Any, base: dict | None) -> dict[str, Any]:
    if value is None:
        return dict(base or {})
    if isinstance(value, str):
        return {"type": value.lower()}
    if isinstance(value, dict):
        return dict(value)
    if hasattr(value, "get_config"):  # a Keras optimizer: its name and settings
        cfg = value.get_config()
        lr = cfg.get("learning_rate")
        if not isinstance(lr, (int, float)):
            raise ValueError("optimizer: a Keras learning-rate schedule cannot be carried; give lr_schedule "
                             "(step, exponential, cosine, reduce_on_plateau) instead")
        # the class names the algorithm (a config's name may be "adam_1"); float32 settings read back as 0.01
        out = {"type": type(value).__name__.lower(), "lr": float(f"{lr:.7g}")}
        if cfg.get("momentum"):
            out["momentum"] = float(cfg["momentum"])
        if cfg.get("nesterov"):
            out["nesterov"] = True
        if cfg.get("weight_decay"):
            out["weight_decay"] = float(f"{cfg['weight_decay']:.7g}")
        return out
    raise TypeError(f"optimizer: give a name ('adam', 'sgd', 'adamw', 'rmsprop'), a dict such as "
                    f"{{'type': 'sgd', 'lr': 0.1}} or a Keras optimizer, not {type(value).__name__}")


def _early_stopping(value: Any, callbacks: Any) -> dict[str, Any] | None:
    stopping: dict[str, Any] | None
    if value is None or value is False:
        stopping = None
    elif value is True:
        stopping = {}
    elif isinstance(value, int):
        stopping = {"patience": value}
    elif isinstance(value, dict):
        stopping = dict(value)
    else:
        raise TypeError("early_stopping: give True, a patience (int) or a dict such as {'patience': 10, "
                        "'monitor': 'val_loss'}")
    for callback in callbacks or ():
        if type(callback).__name__ != "EarlyStopping":
            raise ValueError(f"callbacks: netfit runs the training loop on the service and carries Keras' "
                             f"EarlyStopping only, not {type(callback).__name__}")
        mode = getattr(callback, "mode", "auto")
        stopping = {"monitor": getattr(callback, "monitor", "val_loss"), "patience": int(callback.patience),
                    "min_delta": abs(float(getattr(callback, "min_delta", 0.0))),
                    "restore_best_weights": bool(getattr(callback, "restore_best_weights", False)),
                    "start_from_epoch": int(getattr(callback, "start_from_epoch", 0)),
                    **({"mode": mode} if mode in ("min", "max") else {}),
                    **({"baseline": float(callback.baseline)} if getattr(callback, "baseline", None) is not None
                       else {})}
    if stopping is not None and "monitor" in stopping:
        stopping["monitor"] = MONITORS.get(stopping["monitor"], stopping["monitor"])
    return stopping


def _validate(spec: dict[str, Any]) -> None:
    """The spec's own checks, here, before any data is uploaded (the service checks it again)."""
    from pydantic import ValidationError

    from netfit.spec import JobSpec, teach

    try:
        JobSpec.model_validate_json(json.dumps({**spec, "dataset": {"builtin": "iris"}}))
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {teach(e)}" for e in exc.errors()]
        raise ValueError("the spec fit() built is invalid: " + "; ".join(problems)) from None


# --------------------------------------------------------------------------- data


class _Data:
    def __init__(self, ref: dict[str, Any]):
        self.ref, self.uploaded_bytes, self.scaled, self.has_test, self.notes = ref, 0, False, False, []
        self.has_validation = False
        self.arrays = False  # arrays given (not a data set's name)


def _data(client: Client, x: Any, y: Any, opts: dict[str, Any], converted: Converted, features: str) -> _Data:
    from netfit.spec import BuiltinName

    if isinstance(x, Dataset):
        x = x.id
    if isinstance(x, str):
        if y is not None or opts["test_data"] is not None or opts["validation_data"] is not None:
            raise ValueError(f"x names a data set ({x!r}): give no y, test_data or validation_data with it (upload "
                             "x_val, y_val in its .npz to give it a validation set)")
        builtins = BuiltinName.__args__  # type: ignore[attr-defined]
        return _Data({"builtin": x} if x in builtins else {"id": x})
    if x is None and converted.spec and converted.spec.get("dataset"):
        return _Data(converted.spec["dataset"])  # a whole spec names its data set
    if x is None:
        raise TypeError("fit() needs data: arrays x and y, a DataFrame with target=, or a data set id or "
                        "built-in name (e.g. 'iris')")
    x, y = _arrays(x, y, opts["target"], "x", "y", converted)
    held = {}
    for key, names in (("test_data", ("x_test", "y_test")), ("validation_data", ("x_val", "y_val"))):
        if opts[key] is not None:
            held[key] = _arrays(*_pair(opts[key], key, names), opts["target"], f"{key}[0]", f"{key}[1]", converted)
    x_val, y_val = held.get("validation_data", (None, None))
    return _upload(client, x, y, *held.get("test_data", (None, None)), opts["name"], features, x_val, y_val)


def _pair(value: Any, key: str, names: tuple[str, str]) -> tuple[Any, Any]:
    """(x, y) of test_data or validation_data: a tuple or list of two, as Keras takes them."""
    if isinstance(value, (tuple, list)) and len(value) == 3 and key == "validation_data":
        raise ValueError(f"{key}: Keras' sample weights (a third item) are not carried; netfit weighs every sample "
                         f"alike: give ({names[0]}, {names[1]})")
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        what = f"a {type(value).__name__}" + (f" of {len(value)}" if isinstance(value, (tuple, list)) else "")
        raise ValueError(f"{key} must be a pair ({names[0]}, {names[1]}), not {what}")
    return value[0], value[1]


def _arrays(x: Any, y: Any, target: str | None, xname: str, yname: str, converted: Converted):
    import numpy as np

    if hasattr(x, "columns") and hasattr(x, "to_numpy"):  # a pandas DataFrame
        column = y if isinstance(y, str) else target
        if isinstance(y, str) or (y is None and target is not None):
            if column not in x.columns:
                guess = did_you_mean(str(column), [str(c) for c in x.columns])
                raise ValueError(f"{xname} has no column {column!r}" + (f"; did you mean '{guess}'?" if guess else
                                 f"; its columns are {list(x.columns)[:20]}"))
            x, y = x.drop(columns=[column]), x[column]
        bad = [str(c) for c, kind in x.dtypes.items() if kind.kind not in "biuf"]
        if bad:
            raise ValueError(f"{xname}: columns {bad[:10]} are not numbers; encode them (e.g. pandas.get_dummies) "
                             "or drop them")
        x = x.to_numpy()
    if y is None:
        raise TypeError(f"{yname} is missing: give labels (an array, a Series) or name the target column (target=)")
    x, y = _numpy(x), _numpy(y)
    if y.dtype.kind == "O":
        y = y.astype(str)
    if converted.channels_last and x.ndim == 4:  # Keras' images are (N, H, W, C); netfit's (N, C, H, W)
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if y.ndim == 2 and y.shape[1] > 1 and y.dtype.kind in "iuf" and _one_hot(y):
        y = y.argmax(axis=1)  # Keras' categorical (one-hot) labels: the class index
    return x, y


def _numpy(value: Any):
    import numpy as np

    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        return value.detach().cpu().numpy()
    if hasattr(value, "to_numpy"):  # pandas
        return value.to_numpy()
    return np.asarray(value)


def _one_hot(y: Any) -> bool:
    import numpy as np

    return bool(((y == 0) | (y == 1)).all() and (y.sum(axis=1) == 1).all()) and len(np.unique(y.argmax(1))) > 1


def as_uint8(x: Any):
    """x as uint8 when it is float and every value is exactly k/255 (k = 0..255) as float32
    arithmetic or a float64 division gives it, so that uint8 / 255 (preprocess "scale")
    reproduces it exactly; else None."""
    import numpy as np

    if x.dtype.kind != "f" or x.size == 0:
        return None
    k = np.rint(x * 255.0)
    if k.min() < 0 or k.max() > 255:
        return None
    codes = k.astype(np.uint8)
    levels = np.arange(256)
    exact32 = (levels.astype(np.float32) / np.float32(255)).astype(x.dtype)
    exact64 = (levels / 255.0).astype(x.dtype)
    if np.array_equal(exact32[codes], x) or np.array_equal(exact64[codes], x):
        return codes
    return None


def _upload(client: Client, x, y, x_test, y_test, name: str | None, features: str, x_val=None, y_val=None) -> _Data:
    from netfit.engine.arrays import checked, content_sha256
    from netfit.engine.formats import npz_arrays

    # a DataError (a ValueError) names the array: x, y, test_data[i], validation_data[i]
    raw = checked(x, y, x_test, y_test, names=("x", "y", "test_data[0]", "test_data[1]"), x_val=x_val, y_val=y_val,
                  val_names=("validation_data[0]", "validation_data[1]"))
    notes: list[str] = []
    scaled = False
    if features in ("none", "standardize", "minmax"):  # scale-free, or made "scale" below
        parts = [key for key in ("x", "x_val", "x_test") if getattr(raw, key) is not None]
        codes = {key: as_uint8(getattr(raw, key)) for key in parts}
        if all(c is not None for c in codes.values()):  # every part, or the units would differ between them
            for key, c in codes.items():
                setattr(raw, key, c)
            scaled = True
            notes.append("x is exactly k/255: sent as uint8, divided by 255 in training (preprocess 'scale')")
    digest = content_sha256(raw)
    out = _Data({})
    out.arrays = True
    out.scaled, out.has_test, out.notes = scaled, raw.x_test is not None, notes
    out.has_validation = raw.x_val is not None
    if scaled and features != "none":
        out.notes[-1] = f"x is exactly k/255: sent as uint8 ({features} gives the same features)"
    found = client.datasets(sha256=digest)
    if found:
        out.ref = {"id": found[0].id}
        out.notes.append(f"these arrays are already on the service (data set {found[0].id}): nothing uploaded")
        return out
    import numpy as np

    buffer = io.BytesIO()  # in memory: no file for the caller to find or clean up
    np.savez_compressed(buffer, **npz_arrays(raw))
    try:
        response = client._request("POST", "/v1/datasets", data={"name": name or "fit arrays"},
                                   files={"file": ("arrays.npz", buffer.getvalue(), "application/octet-stream")},
                                   timeout=UPLOAD_TIMEOUT)
    except Exception as exc:  # a NetfitError; 413: past the service's upload cap
        if getattr(exc, "status_code", None) == 413:
            exc.message = (f"{exc.message}; fit packed {raw.x.nbytes / 1e6:.0f} MB of {raw.x.dtype} features into "
                           f"{len(buffer.getvalue()) / 1e6:.0f} MB (float images that are exactly k/255 go as uint8; "
                           "these are not): send uint8 pixels with preprocess='scale', float16, or fewer samples")
        raise
    dataset = Dataset.model_validate(response.json())
    out.ref = {"id": dataset.id}
    out.uploaded_bytes = int(response.request.headers.get("content-length") or len(buffer.getvalue()))
    out.notes.append(f"uploaded {out.uploaded_bytes / 1e6:.1f} MB as data set {dataset.id} "
                     f"({raw.x.nbytes / 1e6:.1f} MB of features)")
    return out


# --------------------------------------------------------------------------- the run


class Run:
    """A training job started by fit (or found again with `client.run(job_id)`).

    `history` (Keras-shaped: {"loss": [...], "accuracy": [...], "val_loss": [...], ...}),
    `job` (the service's record), `wait()`, `follow()`, `cancel()`, `model()`, `predict(x)`,
    `plot()`; in a notebook it shows its status, results and curves."""

    def __init__(self, client: Client, job: Job, uploaded_bytes: int = 0, dataset_id: str | None = None,
                 channels_last: bool = False, x_scale: float | None = None):
        self.client, self.job = client, job
        self.uploaded_bytes = uploaded_bytes  # the upload's bytes on the wire (0: the data was already there)
        self.dataset_id = dataset_id
        self._channels_last, self._x_scale = channels_last, x_scale
        self._history: dict[str, list] | None = None

    @property
    def id(self) -> str:
        return self.job.id

    def refresh(self) -> Job:
        self.job = self.client.job(self.id)
        return self.job

    @property
    def history(self) -> dict[str, list]:
        """Per epoch, as Keras' History.history: loss, accuracy (or rmse, mae), their val_ forms,
        learning_rate; only the metrics the job records."""
        if self._history is not None:
            return self._history
        columns = self.client.metrics_columns(self.id)
        history = {HISTORY_KEYS[k]: v for k, v in columns.items() if k in HISTORY_KEYS}
        if self.refresh().done:
            self._history = history
        return history

    def follow(self) -> Iterator[JobEvent]:
        """The job's events (EpochEvent, StatusEvent) from its first epoch until it ends."""
        return self.client.follow(self.id)

    def wait(self, timeout: float | None = None, verbose: int = 1) -> Run:
        """Show the progress until the job ends (verbose as fit's). Ctrl-C asks whether to cancel
        the job or leave it training (the default; without a terminal it is left)."""
        if timeout is not None:
            self.job = self.client.wait(self.id, timeout=timeout)
            return self
        progress = Progress(self.job.epochs, verbose)
        try:
            for event in self.follow():
                if isinstance(event, EpochEvent):
                    progress.epoch(event.metrics, event.early_stopping)
                elif isinstance(event, StatusEvent) and not event.done:
                    progress.status(str(event))
        except KeyboardInterrupt:
            self._interrupted()
            return self
        progress.done(self.refresh())
        return self

    def _interrupted(self) -> None:
        print(f"\ninterrupted: job {self.id} is still on the service.", flush=True)
        answer = ""
        if sys.stdin is not None and sys.stdin.isatty():
            try:
                answer = input("Cancel it (y), or leave it training (N)? ").strip().lower()
            except (KeyboardInterrupt, EOFError):
                answer = ""
        if answer in ("y", "yes"):
            self.cancel()
            print(f"cancelled job {self.id}", flush=True)
        else:
            print(f"left it training; reattach with client.run({self.id!r}).wait() "
                  f"(or `netfit status {self.id}`)", flush=True)

    def cancel(self) -> Run:
        self.job = self.client.cancel(self.id)
        return self

    def model(self, which: str = "best", raw_inputs: bool = True):
        """The trained torch module (see Client.load_model). A run whose x went as uint8 takes
        its inputs in 0..255, as uploaded; `predict` converts for you."""
        return self.client.load_model(self.id, which, raw_inputs)

    def predict(self, x: Any, checkpoint: str = "best"):
        """Like Keras' predict: class probabilities (N, classes) for classification, values for
        regression, as a numpy array; x as fit took it (arrays, tensors, a DataFrame)."""
        import numpy as np

        x = _numpy(x.to_numpy() if hasattr(x, "columns") else x).astype(np.float32)
        if self._channels_last and x.ndim == 4:
            x = x.transpose(0, 3, 1, 2)
        if self._x_scale:
            x = np.rint(x * self._x_scale)  # the units the data went in
        out = self.client.predict(self.id, x, checkpoint)
        return np.asarray(out["probabilities"] if out.get("probabilities") is not None else out["predictions"])

    def curves(self, fmt: str = "png") -> bytes:
        return self.client.curves(self.id, fmt=fmt)

    def plot(self, path: str | None = None, fmt: str | None = None) -> bytes | None:
        """The learning curves (train/validation loss and accuracy, best epoch marked): shown
        inline in a notebook (and None returned), else PNG/SVG bytes; also saved to `path`."""
        content = self.client.curves(self.id, path=path, fmt=fmt or ("png" if path is None else None))
        if in_notebook():
            from IPython.display import SVG, Image, display

            display(SVG(content) if content.lstrip().startswith(b"<") else Image(data=content))
            return None
        return content

    def __repr__(self) -> str:
        return f"<netfit Run {self.id} {self.job.status}, epoch {self.job.epochs_completed}/{self.job.epochs}>"

    def _repr_html_(self) -> str:
        job = self.refresh()
        rows = [("job", job.id), ("status", job.status + (f" ({job.stop_reason})" if job.stop_reason else "")),
                ("epochs", f"{job.epochs_completed}/{job.epochs}")]
        if job.best_epoch is not None:
            rows.append(("best epoch", str(job.best_epoch)))
        for label, metrics in (("best", job.best_metrics), ("test", job.test_metrics)):
            if metrics:
                rows.append((label, ", ".join(f"{k} {num(v)}" for k, v in metrics.items())))
        if job.error:
            rows.append(("error", job.error))
        table = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
                        f"{html.escape(v)}</td></tr>" for k, v in rows)
        picture = ""
        if job.epochs_completed:
            png = base64.b64encode(self.client.curves(self.id, fmt="png")).decode()
            picture = f"<img alt='learning curves' style='max-width:100%' src='data:image/png;base64,{png}'>"
        return f"<div class='netfit-run'><table>{table}</table>{picture}</div>"
