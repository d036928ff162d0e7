"""Lightning and Keras contenders (the bench extras), imported only when they run.

Each is set up as a user who wants speed would: no progress bar, logger, checkpoints or
model summary; validation in large batches. The epoch is timed by the framework's own
epoch callbacks, so the set-up of each one-epoch fit() call is not counted against it.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def lightning_epoch(data: Any, model: nn.Module, batch_size: int, lr: float, eval_batch: int) -> Callable[[], float]:
    import lightning as L

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")

    class Classifier(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = model
            self.loss = nn.CrossEntropyLoss()

        def _step(self, batch: tuple[torch.Tensor, torch.Tensor], prefix: str) -> torch.Tensor:
            x, y = batch
            out = self.net(x)
            loss = self.loss(out, y)
            self.log(f"{prefix}_loss", loss, on_step=False, on_epoch=True)
            self.log(f"{prefix}_accuracy", (out.argmax(1) == y).float().mean(), on_step=False, on_epoch=True)
            return loss

        def training_step(self, batch: Any, _index: int) -> torch.Tensor:
            return self._step(batch, "train")

        def validation_step(self, batch: Any, _index: int) -> None:
            self._step(batch, "val")

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=lr, fused=True)

    class EpochClock(L.Callback):
        seconds = 0.0

        def on_train_epoch_start(self, *_: Any) -> None:
            self.began = time.perf_counter()

        def on_train_epoch_end(self, *_: Any) -> None:  # after the epoch's validation in Lightning 2
            self.seconds = time.perf_counter() - self.began

    module, clock = Classifier(), EpochClock()
    train = DataLoader(TensorDataset(data.x, data.y), batch_size=batch_size, shuffle=True)
    val = DataLoader(TensorDataset(data.x_val, data.y_val), batch_size=eval_batch)

    def epoch() -> float:
        trainer = L.Trainer(
            max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, callbacks=[clock],
        )
        trainer.fit(module, train, val)
        return clock.seconds

    return epoch


def keras_epoch(data: Any, hidden: tuple[int, ...], dropout: float, batch_size: int, lr: float,
                eval_batch: int) -> Callable[[], float]:
    # the backend is chosen once, at the first import of keras
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    if keras.backend.backend() != "torch":
        raise RuntimeError(f"keras runs on {keras.backend.backend()}; set KERAS_BACKEND=torch before importing it")
    layers: list[Any] = [keras.Input((data.x.shape[1],))]
    for units in hidden:
        layers.append(keras.layers.Dense(units, activation="relu"))
        if dropout:
            layers.append(keras.layers.Dropout(dropout))
    model = keras.Sequential([*layers, keras.layers.Dense(int(data.y.max()) + 1)])
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    x, y, x_val, y_val = (t.numpy() for t in (data.x, data.y, data.x_val, data.y_val))

    class EpochClock(keras.callbacks.Callback):
        seconds = 0.0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:  # after the validation
            self.seconds = time.perf_counter() - self.began

    clock = EpochClock()

    def epoch() -> float:
        model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=True, validation_data=(x_val, y_val),
                  validation_batch_size=eval_batch, verbose=0, callbacks=[clock])
        return clock.seconds

    return epoch
