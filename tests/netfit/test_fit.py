"""`client.fit` against a live embedded service: arrays, DataFrames, Keras and torch models in,
a Keras-shaped history, a loadable model and predictions out; the same arrays upload once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

from netfit import Client  # noqa: E402
from netfit.convert import ConversionError  # noqa: E402
from netfit.models import EpochMetrics  # noqa: E402
from tests.conftest import ROOT, wait_until  # noqa: E402

IRIS_NET = [{"type": "dense", "units": 16, "activation": "relu"}, {"type": "dense", "units": 3}]


@pytest.fixture(scope="module")
def client(embedded_service: str):
    with Client(embedded_service) as c:
        yield c


@pytest.fixture(scope="module")
def iris():
    from sklearn.datasets import load_iris

    data = load_iris()
    return data.data.astype(np.float32), data.target


def test_fit_on_arrays_gives_a_keras_history_a_model_and_predictions(client: Client, iris, capsys):
    x, y = iris
    run = client.fit(IRIS_NET, x, y, epochs=4, batch_size=16, learning_rate=0.02, preprocess="standardize",
                     early_stopping={"patience": 10}, seed=0)
    assert run.job.status == "succeeded" and run.job.epochs_completed == 4
    assert set(run.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(values) == 4 for values in run.history.values())
    assert run.job.spec["split"]["test"] == 0.0  # as in Keras: no test split unless test_data is given
    lines = capsys.readouterr().out.splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/4", "2/4", "3/4", "4/4"]
    assert "patience" in epochs[0] and "val loss" in epochs[0] and "ETA" in epochs[0]
    assert lines[-1].startswith("succeeded")

    probabilities = run.predict(x[:5])
    assert probabilities.shape == (5, 3) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)
    module = run.model()
    import torch

    with torch.inference_mode():
        assert module(torch.as_tensor(x[:5])).shape == (5, 3)
    again = client.run(run.id)
    assert again.history == run.history and "succeeded" in again._repr_html_() and "<img" in again._repr_html_()


def test_the_same_arrays_twice_are_one_upload_and_k_over_255_images_travel_as_uint8(client: Client):
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng().permutation(len(digits.target))  # content this session has not uploaded
    x = (digits.images[order] * 15 / 255).astype(np.float32)  # float images in [0, 1], exactly k/255
    y = digits.target[order]  # sklearn's int64 labels: classes
    net = [{"type": "flatten"}, {"type": "dense", "units": 10}]
    before = len(client.datasets())
    first = client.fit(net, x, y, epochs=3, learning_rate=0.05, verbose=0)
    assert first.uploaded_bytes > 0 and len(client.datasets()) == before + 1
    uploaded = client.dataset(first.dataset_id)
    assert uploaded.n_classes == 10 and uploaded.input_shape == [1, 8, 8]
    assert first.job.spec["preprocess"] == {"features": "scale"}
    assert first.uploaded_bytes < x.nbytes / 2  # uint8 and compressed
    second = client.fit(net, x.copy(), y.copy(), epochs=1, verbose=0)
    assert second.uploaded_bytes == 0 and second.dataset_id == first.dataset_id
    assert len(client.datasets()) == before + 1  # the service holds one copy
    assert first.job.test_metrics is None and second.job.status == "succeeded"
    # predictions take the floats the model was fitted on (uint8 inside)
    assert (first.predict(x[:100]).argmax(1) == y[:100]).mean() > 0.5


def test_a_dataframe_with_a_target_column_and_a_test_set(client: Client, iris):
    pandas = pytest.importorskip("pandas")
    x, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])
    frame = pandas.DataFrame(x, columns=["a", "b", "c", "d"]).assign(species=names[y])
    train, test = frame.iloc[::2], frame.iloc[1::2]
    run = client.fit(IRIS_NET, train, "species", test_data=(test.drop(columns="species"), test["species"]),
                     epochs=2, verbose=0)
    assert run.job.status == "succeeded" and set(run.job.test_metrics) >= {"test_accuracy"}
    assert client.dataset(run.dataset_id).n_samples == 150 and client.dataset(run.dataset_id).has_test_split
    with pytest.raises(ValueError, match="did you mean 'species'"):
        client.fit(IRIS_NET, frame, target="Specis", verbose=0)


def test_wrong_keywords_and_networks_fail_before_anything_is_uploaded(client: Client, iris):
    keras = pytest.importorskip("keras")
    x, y = iris
    before = len(client.datasets())
    with pytest.raises(TypeError, match="did you mean 'validation_split'"):
        client.fit(IRIS_NET, x, y, validaton_split=0.1)
    with pytest.raises(TypeError, match="class_weight"):
        client.fit(IRIS_NET, x, y, class_weight={0: 1})
    with pytest.raises(ValueError, match="give it or validation_split .a share drawn from x, y., not both"):
        client.fit(IRIS_NET, x, y, validation_data=(x, y), validation_split=0.1)
    lstm = keras.Sequential([keras.Input((4, 1)), keras.layers.LSTM(3), keras.layers.Dense(3)])
    with pytest.raises(ConversionError, match="LSTM"):
        client.fit(lstm, x, y)
    with pytest.raises(ValueError, match="units"):
        client.fit([{"type": "dense", "units": 0}], x, y)
    assert len(client.datasets()) == before


def test_bad_validation_data_or_shuffle_is_refused_before_anything_is_uploaded(client: Client, iris):
    x, y = iris
    before = len(client.datasets())
    with pytest.raises(ValueError, match="give it or validation_split .a share drawn from x, y., not both"):
        client.fit(IRIS_NET, x, y, validation_data=(x, y), validation_split=0.1)
    with pytest.raises(ValueError, match=r"validation_data must be a pair \(x_val, y_val\), not a ndarray"):
        client.fit(IRIS_NET, x, y, validation_data=x)
    with pytest.raises(ValueError, match=r"validation_data must be a pair \(x_val, y_val\), not a list of 1"):
        client.fit(IRIS_NET, x, y, validation_data=[x])
    with pytest.raises(ValueError, match="validation_data: Keras' sample weights"):
        client.fit(IRIS_NET, x, y, validation_data=(x, y, np.ones(len(y))))
    with pytest.raises(ValueError, match=r"validation_data\[0\] samples have shape \(3,\) but x samples \(4,\)"):
        client.fit(IRIS_NET, x, y, validation_data=(x[:, :3], y))
    with pytest.raises(ValueError, match=r"validation_data\[0\] has 150 samples but validation_data\[1\] has 149"):
        client.fit(IRIS_NET, x, y, validation_data=(x, y[1:]))
    with pytest.raises(ValueError, match="x names a data set .'iris'.: give no y, test_data or validation_data"):
        client.fit(IRIS_NET, "iris", validation_data=(x, y))
    with pytest.raises(TypeError, match="shuffle must be True .* or False"):
        client.fit(IRIS_NET, x, y, shuffle="batch")
    assert len(client.datasets()) == before


def test_validation_data_is_the_validation_set_as_given(client: Client, iris):
    x, y = iris
    order = np.random.default_rng().permutation(len(y))  # content this session has not uploaded
    x_train, y_train, x_val, y_val = x[order[:110]], y[order[:110]], x[order[110:]], y[order[110:]]
    run = client.fit(IRIS_NET, x_train, y_train, validation_data=(x_val, y_val), epochs=6, batch_size=16,
                     learning_rate=0.02, early_stopping={"monitor": "val_loss", "patience": 10}, seed=3, verbose=0)
    assert run.job.status == "succeeded", run.job.error
    dataset = client.dataset(run.dataset_id)
    assert dataset.has_validation_split and not dataset.has_test_split and dataset.n_samples == 150
    assert run.job.spec["split"]["validation"] == 0.0 and run.job.spec["split"]["test"] == 0.0
    # the val metrics are those of exactly the arrays given: recomputed from the best checkpoint
    best = run.job.best_epoch
    probabilities = run.predict(x_val, checkpoint="best")
    val_loss = -np.log(probabilities[np.arange(len(y_val)), y_val]).mean()
    assert val_loss == pytest.approx(run.history["val_loss"][best - 1], rel=1e-4)
    assert (probabilities.argmax(1) == y_val).mean() == pytest.approx(run.history["val_accuracy"][best - 1])
    # the data set by its id: its own validation set again, nothing drawn
    again = client.fit(IRIS_NET, run.dataset_id, epochs=1, verbose=0)
    assert again.job.status == "succeeded" and again.job.spec["split"]["validation"] == 0.0 and again.history["val_loss"]


def test_shuffle_false_trains_on_the_batches_in_the_order_given(client: Client, iris):
    import torch

    x, y = iris
    order = np.random.default_rng().permutation(len(y))
    x_train, y_train, x_val, y_val = x[order[:120]], y[order[:120]], x[order[120:]], y[order[120:]]
    common = dict(validation_data=(x_val, y_val), epochs=2, batch_size=16, learning_rate=0.02, seed=7, verbose=0,
                  device="cpu")
    shuffled = client.fit(IRIS_NET, x_train, y_train, **common)
    # the order the shuffled run's first epoch draws (its CPU generator, seeded by the seed), given as x's order
    first = torch.randperm(120, generator=torch.Generator().manual_seed(7)).numpy()
    in_order = client.fit(IRIS_NET, x_train[first], y_train[first], shuffle=False, **common)
    assert in_order.job.spec["training"]["shuffle"] is False and shuffled.job.spec["training"].get("shuffle", True)
    a, b = shuffled.history, in_order.history
    # epoch 1: the same batches in the same order, so the same numbers; epoch 2: a new order for
    # the shuffled run only
    assert [b[k][0] for k in ("loss", "val_loss")] == pytest.approx([a[k][0] for k in ("loss", "val_loss")], rel=1e-5)
    assert b["loss"][1] != pytest.approx(a["loss"][1], rel=1e-5)


@pytest.mark.slow
def test_a_keras_model_trains_as_well_as_keras_trains_it(client: Client):
    """A seeded tabular task: the same network fitted by Keras here and by netfit from its Keras
    model, scored on the same test set."""
    keras = pytest.importorskip("keras")
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(data.data.astype(np.float32), data.target, test_size=0.3,
                                                        random_state=0, stratify=data.target)
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train).astype(np.float32), scaler.transform(x_test).astype(np.float32)

    def network():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((30,)), keras.layers.Dense(16, activation="relu"),
                                 keras.layers.Dropout(0.1), keras.layers.Dense(2, activation="softmax")])

    reference = network()
    reference.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    reference.fit(x_train, y_train, epochs=20, batch_size=32, validation_split=0.2, verbose=0)
    keras_accuracy = reference.evaluate(x_test, y_test, verbose=0)[1]

    model = network()
    run = client.fit(model, x_train, y_train, test_data=(x_test, y_test), epochs=20, batch_size=32,
                     optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", verbose=0)
    netfit_accuracy = run.job.test_metrics["test_accuracy"]
    print(f"\nbreast cancer, Dense(16)-Dropout-Dense(2), 20 epochs: Keras {keras_accuracy:.4f}, netfit "
          f"{netfit_accuracy:.4f}")
    assert netfit_accuracy == pytest.approx(keras_accuracy, abs=0.04)
    assert run.job.summary.total_params == model.count_params()
    optimizer = run.job.spec["training"]["optimizer"]
    assert (optimizer["type"], optimizer["lr"]) == ("adam", 0.01)  # read from the Keras optimizer


def test_a_torch_sequential_and_a_keras_cnn_round_trip(client: Client):
    keras = pytest.importorskip("keras")
    import torch
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images[..., None].astype(np.float32) / 16  # Keras' layout: (N, H, W, C)
    cnn = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                            keras.layers.MaxPooling2D(), keras.layers.Flatten(), keras.layers.Dense(10)])
    run = client.fit(cnn, images, digits.target, epochs=2, verbose=0)
    assert run.job.summary.input_shape == [1, 8, 8] and run.job.summary.total_params == cnn.count_params()
    assert [layer.output_shape for layer in run.job.summary.layers] == \
        [[s[-1], *s[1:-1]] if len(s) == 4 else list(s[1:]) for s in (layer.output.shape for layer in cnn.layers)]
    assert run.predict(images[:4]).shape == (4, 10)

    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                              torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(32, 10)))
    run = client.fit(net, torch.as_tensor(digits.data, dtype=torch.float32), torch.as_tensor(digits.target),
                     epochs=2, preprocess="standardize", verbose=0)
    assert run.job.summary.total_params == sum(p.numel() for p in net.parameters())
    loaded = run.model(raw_inputs=False)
    assert [p.shape for p in loaded.parameters()] == [p.shape for p in net.parameters()]


def test_events_read_as_one_line_each(client: Client, iris):
    x, y = iris
    run = client.fit(IRIS_NET, x, y, epochs=2, verbose=0, early_stopping=True)
    lines = [str(event) for event in run.follow()]
    assert lines[-1] == "succeeded · stopped by max_epochs"
    epoch_lines = [line for line in lines if line.startswith("epoch")]
    assert len(epoch_lines) == 2 and all("\n" not in line and len(line) < 160 for line in lines)
    assert "patience 0/10" in epoch_lines[0] or "patience 1/10" in epoch_lines[1]


FIT_FOREVER = """
import sys
import numpy as np
from sklearn.datasets import load_iris
import netfit
data = load_iris()
netfit.Client(sys.argv[1]).fit([{"type": "dense", "units": 3}], data.data, data.target, epochs=5000, batch_size=2)
print("fit returned")
"""


def test_ctrl_c_without_a_terminal_leaves_the_job_training_and_says_how_to_reattach(client: Client, tmp_path):
    script = tmp_path / "fit_forever.py"
    script.write_text(FIT_FOREVER)
    log = tmp_path / "out.txt"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, str(script), client.base_url], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            wait_until(lambda: re.search(r"epoch +2/5000", log.read_text()), timeout=120, what="two epochs printed")
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert proc.returncode == 0 and "fit returned" in text
    job_id = text.split("client.run('")[1].split("')")[0]
    assert "left it training" in text
    assert client.job(job_id).status in ("queued", "running")  # still training
    client.cancel(job_id)
    assert client.wait(job_id, timeout=60).status == "cancelled"


def test_progress_lines_estimate_what_is_left_from_the_engine_times():
    from netfit.progress import Progress

    lines: list[str] = []
    progress = Progress(10, verbose=2, out=lines.append, notebook=False)
    for epoch in (1, 2):
        progress.epoch(EpochMetrics(epoch=epoch, train_loss=1.0 / epoch, seconds=3.0), None)
    assert lines[1].startswith("epoch  2/10  train loss 0.5000") and lines[1].endswith("6s (ETA 24s)")


def test_the_engine_reads_arrays_given_by_hand_with_the_uploads_label_rule():
    """sklearn's int64 digit labels are classes for load_data(raw=...) as for an uploaded NPZ."""
    from sklearn.datasets import load_digits

    from netfit.engine.data import RawArrays, load_data
    from netfit.spec import JobSpec

    digits = load_digits()
    spec = JobSpec.model_validate({"dataset": {"builtin": "digits"}, "model": {"layers": IRIS_NET}})
    prepared = load_data(spec, raw=RawArrays(digits.data, digits.target))
    assert prepared.signature.task == "classification" and prepared.signature.n_classes == 10
    assert prepared.classes == [str(i) for i in range(10)]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_mnist_sized_float_pair_uploads_once_as_uint8(client: Client):
    """60,000 + 10,000 images of 28x28 float32 in [0, 1] (219.5 MB, past the 200 MiB upload cap)
    travel as uint8 once; the second fit on the same arrays sends nothing."""
    rng = np.random.default_rng()
    pixels = np.where(rng.random((70_000, 28, 28)) < 0.2, rng.integers(0, 256, (70_000, 28, 28)), 0)
    x, y = pixels.astype(np.float32) / 255, rng.integers(0, 10, 70_000)
    assert x.nbytes > 200 * 2**20
    net = [{"type": "flatten"}, {"type": "dense", "units": 10}]
    before = len(client.datasets())
    runs = []
    for _ in range(2):
        runs.append(client.fit(net, x[:60_000], y[:60_000], test_data=(x[60_000:], y[60_000:]), epochs=1,
                               wait=False, verbose=0))
        client.cancel(runs[-1].id)
    assert 0 < runs[0].uploaded_bytes < x.nbytes / 4 and runs[1].uploaded_bytes == 0
    assert runs[0].dataset_id == runs[1].dataset_id and len(client.datasets()) == before + 1
    stored = client.dataset(runs[0].dataset_id)
    assert (stored.n_samples, stored.input_shape, stored.has_test_split) == (70_000, [1, 28, 28], True)
