"""One list of metric names (netfit.spec.metric_names): what the engine records, what the
database stores, what the wire carries and what a spec may monitor all agree with it."""

import pytest

from db.models import METRIC_COLUMNS, EpochMetric
from netfit.engine.data import load_data
from netfit.engine.errors import SpecError
from netfit.engine.fit import fit
from netfit.engine.layers import check
from netfit.models import EpochMetrics
from netfit.spec import ALL_METRICS, JobSpec, metric_names
from tests.conftest import iris_spec


def test_the_wire_and_the_database_carry_every_metric_in_one_order():
    assert tuple(EpochMetrics.model_fields) == ("epoch", *ALL_METRICS, "lr", "seconds")
    assert METRIC_COLUMNS == tuple(EpochMetrics.model_fields)[1:]
    assert set(METRIC_COLUMNS) <= set(EpochMetric.__table__.c.keys())


@pytest.mark.parametrize("dataset, task", [({"builtin": "iris"}, "classification"),
                                           ({"synthetic": {"kind": "regression", "n_samples": 60}}, "regression")])
def test_the_engine_records_exactly_the_listed_metrics(dataset, task):
    raw = {**iris_spec(epochs=1), "dataset": dataset}
    if task == "regression":
        raw["model"]["layers"][-1]["units"] = 1
        raw["preprocess"] = {"features": "standardize"}
    spec = JobSpec.model_validate(raw)
    [report] = fit(spec, load_data(spec)).history
    assert set(report.metrics) == {*metric_names(task), "lr"}
    assert all(report.metrics[name] is not None for name in metric_names(task))


def test_a_monitor_the_job_does_not_record_is_refused_with_the_recorded_list():
    spec = JobSpec.model_validate(iris_spec(early_stopping={"monitor": "val_rmse"}))
    with pytest.raises(SpecError) as refused:
        check(spec, load_data(spec).signature)
    assert str(list(metric_names("classification"))) in str(refused.value.errors)


def test_label_smoothing_on_an_inferred_binary_task_is_refused_not_dropped():
    raw = iris_spec(label_smoothing=0.1)
    raw["dataset"] = {"builtin": "breast_cancer"}
    raw["model"]["layers"][-1]["units"] = 1  # two classes, one output: binary (BCE)
    spec = JobSpec.model_validate(raw)
    with pytest.raises(SpecError) as refused:
        check(spec, load_data(spec).signature)
    [error] = refused.value.errors
    assert error["loc"] == ["training", "label_smoothing"] and "remove label_smoothing" in error["msg"]
