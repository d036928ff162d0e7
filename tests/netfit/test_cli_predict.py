"""`netfit predict` (CSV rows in → the same rows + prediction + per-class probabilities out;
NPZ images) and `netfit export`, against a live embedded service."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from netfit import Client
from tests.conftest import iris_spec
from tests.netfit.conftest import netfit, one_line_error


@pytest.mark.slow
def test_predict_a_csv_and_npz_images_and_export(embedded_service: str, tmp_path: Path):
    with Client(embedded_service) as client:
        iris = client.wait(client.submit(iris_spec(epochs=20)).id, timeout=120)
        images = np.stack([load_digits().images[:4]]).reshape(4, 8, 8)
        buf = io.BytesIO()
        np.savez(buf, x=load_digits().images.astype(np.uint8), y=load_digits().target)
        (tmp_path / "digits.npz").write_bytes(buf.getvalue())
        ds = client.upload_dataset(tmp_path / "digits.npz")
        conv = client.wait(client.submit({
            "dataset": {"id": ds.id}, "preprocess": {"features": "scale"},
            "model": {"layers": [{"type": "conv2d", "filters": 2, "kernel_size": 3}, {"type": "flatten"},
                                 {"type": "linear", "units": 10}]},
            "training": {"epochs": 2, "device": "cpu"}}).id, timeout=120)

    rows = tmp_path / "flowers.csv"
    rows.write_text("sepal_length,sepal_width,petal_length,petal_width,note\n"
                    "5.0,3.4,1.5,0.2,garden\n7.7,3.0,6.1,2.3,field\n")
    result = netfit("predict", iris.id, str(rows), "-o", str(tmp_path / "out.csv"), url=embedded_service)
    assert result.returncode == 0, result.stderr
    assert "note" in result.stderr  # a text column is kept in the output, not sent
    with (tmp_path / "out.csv").open() as fh:
        out = list(csv.DictReader(fh))
    assert [r["note"] for r in out] == ["garden", "field"]
    assert {r["prediction"] for r in out} <= {"setosa", "versicolor", "virginica"}
    for r in out:
        assert abs(sum(float(r[f"probability_{c}"]) for c in ("setosa", "versicolor", "virginica")) - 1) < 1e-4

    np.savez(tmp_path / "images.npz", x=images)
    result = netfit("predict", conv.id, str(tmp_path / "images.npz"), url=embedded_service)
    assert result.returncode == 0, result.stderr
    lines = list(csv.reader(io.StringIO(result.stdout)))
    assert lines[0][:2] == ["index", "prediction"] and len(lines) == 5 and len(lines[0]) == 12

    result = netfit("export", iris.id, "-o", str(tmp_path / "iris.onnx"), url=embedded_service)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "iris.onnx").stat().st_size > 0

    short = tmp_path / "short.csv"
    short.write_text("a,b\n1,2\n")
    assert "4 features" in one_line_error(netfit("predict", iris.id, str(short), url=embedded_service))
