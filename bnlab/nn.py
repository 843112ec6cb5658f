"""Low-level networks for Part 2 of the exercise: layer functions that own their variables.

TensorFlow 1 built a graph once, so a layer function could create its variables with
``tf.get_variable`` and every later ``session.run`` reused them. In TensorFlow 2 the forward pass
runs again for every batch, so something must keep the variables between passes. Here it is a
:class:`Network` (a ``tf.Module``): while it runs ``build_fn(images, is_training)``, every
:func:`get_variable` call creates a ``tf.Variable`` on the first pass and returns the very same
variable on every later pass, matched by call order. Layer functions stay plain functions with a
training flag, as in the original exercise::

    def fully_connected(prev_layer, num_units, is_training):
        weights = get_variable("weights", [prev_layer.shape[-1], num_units], tf.keras.initializers.GlorotUniform())
        ...

    network = Network(build_fn)
    logits = network(images, is_training=True)
"""

from __future__ import annotations

import threading
from typing import Callable

import bnlab

tf = bnlab.tf

_ACTIVE = threading.local()


class VariableOrderError(RuntimeError):
    """A later forward pass asked for different variables than the first pass created."""


def _initial_value(initializer, shape, dtype):
    if callable(initializer):
        try:
            value = initializer(shape, dtype=dtype)
        except TypeError:  # tf.ones / tf.zeros style or a plain lambda(shape)
            value = initializer(shape)
    else:
        value = initializer
    value = tf.convert_to_tensor(value, dtype=dtype)
    if value.shape.as_list() != list(shape):
        raise ValueError(f"initializer gave shape {value.shape.as_list()}, but shape {list(shape)} was asked for")
    return value


class Network(tf.Module):
    """Runs ``build_fn(images, is_training)`` and keeps the variables its layers create.

    ``network.variables`` / ``trainable_variables`` list them like any ``tf.Module``; the optimizer
    trains ``network.trainable_variables``. The first call creates the variables (inside a
    ``tf.function`` too); later calls must request the same variables in the same order.
    """

    def __init__(self, build_fn: Callable, name: str | None = None):
        super().__init__(name=name)
        if not callable(build_fn):
            raise TypeError("Network(build_fn): build_fn must be a function build_fn(images, is_training)")
        self._build_fn = build_fn
        self.created = []  # tracked by tf.Module: the variables, in creation order
        self._names = []
        self._built = False
        self._cursor = 0

    @property
    def built(self) -> bool:
        return self._built

    def __call__(self, images, is_training):
        previous = getattr(_ACTIVE, "network", None)
        _ACTIVE.network = self
        self._cursor = 0
        try:
            output = self._build_fn(images, is_training)
        finally:
            _ACTIVE.network = previous
        if not self._built:
            self._built = True
        elif self._cursor != len(self.created):
            raise VariableOrderError(
                f"this pass used {self._cursor} variables but the first pass created {len(self.created)}: "
                "the layers must ask for the same variables on every pass (training and inference alike)"
            )
        return output

    def _get(self, name, shape, initializer, trainable, dtype):
        shape = [int(s) for s in shape]
        if not self._built:
            with tf.init_scope():  # create eagerly even when the first call is being traced
                variable = tf.Variable(_initial_value(initializer, shape, dtype), trainable=trainable, name=name)
            self.created.append(variable)
            self._names.append(name)
            self._cursor += 1
            return variable
        if self._cursor >= len(self.created):
            raise VariableOrderError(
                f"get_variable({name!r}) asked for more variables than the first pass created ({len(self.created)})"
            )
        variable = self.created[self._cursor]
        expected_name = self._names[self._cursor]
        if expected_name != name or variable.shape.as_list() != shape or variable.trainable != trainable:
            raise VariableOrderError(
                f"variable #{self._cursor + 1} was created as {expected_name!r} {variable.shape.as_list()} "
                f"(trainable={variable.trainable}) but is now requested as {name!r} {shape} (trainable={trainable}); "
                "ask for the same variables, in the same order, on every pass"
            )
        self._cursor += 1
        return variable


def get_variable(name: str, shape, initializer, trainable: bool = True, dtype=tf.float32) -> tf.Variable:
    """A ``tf.Variable`` that lives across forward passes of the running :class:`Network`.

    Created on the network's first pass, returned again on every later pass (matched by call order).

    Args:
        name: the variable's name; later passes must ask for the same name at the same position.
        shape: its shape, a list of sizes.
        initializer: a Keras initializer, a function of the shape (``tf.zeros``, ``tf.ones``) or a value.
        trainable: ``False`` for state the optimizer must not touch (population statistics).
        dtype: the variable's dtype.
    """
    network = getattr(_ACTIVE, "network", None)
    if network is None:
        raise RuntimeError(
            "get_variable() must be called while a bnlab.nn.Network runs: build the network with "
            "Network(build_fn) and call network(images, is_training); call layer functions from build_fn"
        )
    return network._get(name, shape, initializer, trainable, dtype)


def dense(prev_layer, num_units, name="dense"):
    """A plain linear layer (weights and bias), for the output of the low-level network."""
    weights = get_variable(f"{name}_weights", [prev_layer.shape[-1], num_units], tf.keras.initializers.GlorotUniform())
    bias = get_variable(f"{name}_bias", [num_units], tf.zeros)
    return tf.matmul(prev_layer, weights) + bias
