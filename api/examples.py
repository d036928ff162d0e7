"""Example bodies shown in the OpenAPI docs (/docs)."""

IRIS_SPEC = {
    "name": "iris-mlp",
    "dataset": {"builtin": "iris"},
    "split": {"validation": 0.2, "test": 0.2, "stratify": True, "seed": 0},
    "preprocess": {"features": "standardize"},
    "model": {"layers": [
        {"type": "linear", "units": 16}, {"type": "relu"}, {"type": "dropout", "p": 0.1},
        {"type": "linear", "units": 3},
    ]},
    "training": {
        "epochs": 300, "batch_size": 16,
        "optimizer": {"type": "adam", "lr": 0.01, "weight_decay": 0.0},
        "early_stopping": {"monitor": "val_loss", "patience": 20, "min_delta": 0.0, "restore_best_weights": True},
        "seed": 0, "device": "auto",
    },
}

JOB_EXAMPLES = {
    "iris": {"summary": "Iris: a two-layer MLP with early stopping", "value": IRIS_SPEC},
    "keras": {
        "summary": "The same in Keras vocabulary",
        "value": {"dataset": {"builtin": "iris"}, "preprocess": {"features": "standardize"},
                  "model": {"layers": [{"type": "Dense", "units": 16, "activation": "relu"},
                                       {"type": "Dense", "units": 3}]},
                  "training": {"epochs": 100}},
    },
}
