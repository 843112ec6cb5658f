"""The monitor's Keras callback: ``model.fit`` progress logged into a :class:`~bnlab.monitor.Run`."""

from __future__ import annotations

__all__ = ["make_keras_callback", "accuracy_key"]


def accuracy_key(logs: dict, prefix: str = "") -> str | None:
    """The first key of Keras ``logs`` that names an accuracy: ``"accuracy"`` or
    ``"sparse_categorical_accuracy"`` with ``prefix=""`` (never a ``val_`` key), ``"val_accuracy"``
    with ``prefix="val_"``; ``None`` when there is none."""
    for key in logs:
        if key.startswith(prefix) and "acc" in key[len(prefix) :] and (prefix or not key.startswith("val_")):
            return key
    return None


def make_keras_callback(monitor, name: str, log_every: int, total_batches: int | None):
    """See :meth:`bnlab.monitor.TrainingMonitor.keras_callback`."""
    import keras

    def log(run, batch: int, logs: dict, prefix: str, split: str) -> None:
        key = accuracy_key(logs, prefix)
        acc = float(logs[key]) if key else float("nan")
        run.log(batch, float(logs[f"{prefix}loss"]), acc, split=split)

    class MonitorCallback(keras.callbacks.Callback):
        """Logs ``model.fit`` progress into a :class:`Run` of a :class:`TrainingMonitor`."""

        def __init__(self):
            super().__init__()
            self.run = monitor.run(name, total_batches=total_batches)
            self.batches = 0

        def on_train_begin(self, logs=None):
            params = getattr(self, "params", None) or {}
            if self.run.total_batches is None and params.get("steps") and params.get("epochs"):
                self.run.total_batches = int(params["steps"]) * int(params["epochs"])
            self.run.start()

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1
            if log_every > 0 and self.batches % log_every == 0 and logs and "loss" in logs:
                log(self.run, self.batches, logs, "", "train")

        def on_epoch_end(self, epoch, logs=None):
            if logs and "val_loss" in logs:
                log(self.run, self.batches, logs, "val_", "validation")

        def on_train_end(self, logs=None):
            self.run.finish()

    return MonitorCallback()
