"""Stand-ins shared by the tests of the lesson and its helpers: random MNIST-shaped data and a
monitor run that records what a training loop reports."""

from __future__ import annotations

import numpy as np

from bnlab.data import Mnist, Split


def fake_mnist(n_train: int = 600, n_eval: int = 120, seed: int = 0) -> Mnist:
    """Random MNIST-shaped data: fast, and enough to exercise the training loops."""
    rng = np.random.default_rng(seed)

    def split(n):
        return Split(rng.random((n, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, size=n).astype(np.int64))

    return Mnist(train=split(n_train), validation=split(n_eval), test=split(n_eval))


def learnable_mnist(n_train: int = 2048, n_eval: int = 500, seed: int = 0) -> Mnist:
    """A small, fixed, learnable stand-in for MNIST: each class lights up its own block of pixels."""
    rng = np.random.default_rng(seed)

    def split(n):
        labels = rng.integers(0, 10, n)
        images = rng.normal(0.0, 0.3, (n, 28, 28, 1)).astype(np.float32)
        for i, label in enumerate(labels):
            images[i, 2 * label : 2 * label + 4, :8, 0] += 1.0
        return Split(images, labels.astype(np.int64))

    return Mnist(split(n_train), split(n_eval), split(n_eval))


class FakeRun:
    """Records what the training loop reports, like a monitor run would receive it."""

    def __init__(self):
        self.logs: list[tuple[int, float, float, str]] = []
        self.final: dict | None = None

    def log(self, batch, loss, accuracy, split="train"):
        assert isinstance(batch, int), f"batch must be an int, got {type(batch).__name__}"
        self.logs.append((batch, float(loss), float(accuracy), split))

    def finish(self, **final):
        self.final = final
