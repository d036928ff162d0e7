"""Errors that teach: a spec mistake a new user makes gets a message saying what to change."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from netfit.engine.data import DataSignature, read_upload
from netfit.engine.errors import DataError
from netfit.engine.layers import summarize
from netfit.spec import JobSpec, teach


def messages(layers=None, **training) -> list[str]:
    spec = {"dataset": {"builtin": "iris"}, "model": {"layers": layers or [{"type": "linear", "units": 3}]},
            "training": training}
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate(spec)
    return [teach(e) for e in info.value.errors()]


def test_a_layer_typo_gets_did_you_mean_and_both_vocabularies():
    (msg,) = messages([{"type": "linaer", "units": 3}])
    assert "did you mean 'linear'" in msg
    for word in ("linear", "conv2d", "maxpool2d", "Dense", "Conv2D", "MaxPooling2D", "BatchNormalization"):
        assert word in msg, word


def test_a_keras_spelling_typo_is_answered_in_keras_words():
    (msg,) = messages([{"type": "Maxpoolng2D"}, {"type": "linear", "units": 3}])
    assert "did you mean 'MaxPooling2D'" in msg


def test_activation_and_optimizer_typos_get_did_you_mean():
    (act,) = messages([{"type": "dense", "units": 3, "activation": "sofmax"}])
    assert "did you mean 'softmax'" in act
    (opt,) = messages(optimizer={"type": "adma"})
    assert "did you mean 'adam'" in opt


def test_a_word_far_from_any_gets_no_guess():
    (opt,) = messages(optimizer={"type": "lbfgs"})
    assert "did you mean" not in opt and "adam" in opt  # the accepted words, no wrong guess


def test_a_quoted_number_says_remove_the_quotes():
    (msg,) = messages([{"type": "linear", "units": "16"}])
    assert 'remove the quotes: write 16, not "16"' in msg
    (lr,) = messages(optimizer={"lr": "0.01"})
    assert "write 0.01" in lr


def test_keras_input_shape_is_explained_as_inferred():
    (msg,) = messages([{"type": "dense", "units": 3, "input_shape": [4]}])
    assert "infers every input size" in msg and "remove 'input_shape'" in msg


def test_a_csv_target_in_the_wrong_case_gets_a_case_hint():
    csv = b"sepal,petal,species\n1,2,a\n3,4,b\n"
    with pytest.raises(DataError, match="has 'species' .*case-sensitive"):
        read_upload(csv, "iris.csv", "Species")
    with pytest.raises(DataError, match="did you mean 'species'"):
        read_upload(csv, "iris.csv", "specis")


IRIS = DataSignature((4,), "classification", 3, 1, 150, False)


def notes_of(spec: dict, signature: DataSignature = IRIS) -> list[str]:
    return summarize(JobSpec.model_validate(spec), signature).notes


def test_notes_say_what_netfit_chose_and_changed():
    notes = notes_of({"dataset": {"builtin": "iris"},
                      "model": {"layers": [{"type": "dense", "units": 3, "activation": "softmax"}]}})
    text = " | ".join(notes)
    assert "task 'classification' inferred" in text
    assert "loss 'cross_entropy' chosen" in text
    assert "softmax is folded into the loss" in text and "logits" in text


def test_no_notes_when_the_user_chose_everything():
    notes = notes_of({"dataset": {"builtin": "iris"}, "model": {"layers": [{"type": "linear", "units": 3}]},
                      "training": {"task": "classification", "loss": "cross_entropy", "early_stopping": {}}})
    assert notes == []


def test_unscaled_integer_pixels_are_noted_and_scaling_silences_it():
    images = DataSignature((1, 28, 28), "classification", 10, 1, 70_000, True, integer_max=255.0)
    spec = {"dataset": {"builtin": "iris"}, "model": {"layers": [{"type": "flatten"}, {"type": "linear", "units": 10}]},
            "training": {"task": "classification", "loss": "cross_entropy", "early_stopping": {"patience": 5}}}
    assert any("unscaled integers up to 255" in n for n in notes_of(spec, images))
    assert notes_of(spec | {"preprocess": {"features": "scale"}}, images) == []
