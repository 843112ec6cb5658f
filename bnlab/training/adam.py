"""Adam for the exercise's training loop: Keras' Adam update, one fused TensorFlow op per variable.

Keras 3's ``Adam.apply_gradients`` builds about 25 small operations per variable, which a
``tf.function`` traces and every step runs. :class:`FusedAdam` does the same update with
``ResourceApplyAdam``, TensorFlow's fused Adam kernel (the one TF1's ``AdamOptimizer`` uses):
one operation per variable, so the exercise's training step traces and runs with far fewer ops.

The update is Keras' (and Kingma & Ba's, in the "epsilon hat" form), with Keras' defaults::

    t = iterations + 1
    m = beta_1 * m + (1 - beta_1) * g
    v = beta_2 * v + (1 - beta_2) * g * g
    var -= learning_rate * sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (sqrt(v) + epsilon)

It offers what a ``train_step`` and the loop use, in Keras 3's spellings:
``apply_gradients(zip(grads, vars))``, ``apply(grads, vars)`` (``vars`` defaults to the variables
the optimizer was built with), ``build(vars)``, ``learning_rate`` (settable) and
``iterations``.
"""

from __future__ import annotations

import bnlab

tf = bnlab.tf


def _resource(variable):
    """The ``tf.Variable`` behind a Keras variable (or the variable itself)."""
    return getattr(variable, "value", variable) if not isinstance(variable, tf.Variable) else variable


class FusedAdam(tf.Module):
    """Adam with Keras' defaults (``beta_1=0.9, beta_2=0.999, epsilon=1e-7``), fused per variable."""

    def __init__(
        self,
        learning_rate: float = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        name: str = "fused_adam",
    ):
        super().__init__(name=name)
        self._learning_rate = tf.Variable(float(learning_rate), trainable=False, dtype=tf.float32)
        self.iterations = tf.Variable(0, trainable=False, dtype=tf.int64)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self._slots = {}  # id(variable) -> (variable, m, v)
        self._built = []  # the variables of build(), in order (apply's default)

    @property
    def learning_rate(self):
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        self._learning_rate.assign(float(value))

    def build(self, var_list) -> None:
        """Create the two moment slots of every variable (eagerly, outside any ``tf.function``)."""
        with tf.init_scope():
            for variable in var_list:
                var = _resource(variable)
                if id(var) not in self._slots:
                    self._built.append(variable)
                    self._slots[id(var)] = (
                        var,
                        tf.Variable(tf.zeros(var.shape, var.dtype), trainable=False),
                        tf.Variable(tf.zeros(var.shape, var.dtype), trainable=False),
                    )

    def apply_gradients(self, grads_and_vars) -> None:
        """One Adam step for every ``(gradient, variable)`` pair (``None`` gradients are skipped)."""
        pairs = [(g, _resource(v)) for g, v in grads_and_vars if g is not None]
        self.build([v for _, v in pairs])
        t = tf.cast(self.iterations + 1, tf.float32)
        beta_1_power, beta_2_power = tf.pow(self.beta_1, t), tf.pow(self.beta_2, t)
        for gradient, var in pairs:
            _, m, v = self._slots[id(var)]
            dtype = var.dtype
            tf.raw_ops.ResourceApplyAdam(
                var=var.handle,
                m=m.handle,
                v=v.handle,
                beta1_power=tf.cast(beta_1_power, dtype),
                beta2_power=tf.cast(beta_2_power, dtype),
                lr=tf.cast(self._learning_rate, dtype),
                beta1=tf.constant(self.beta_1, dtype),
                beta2=tf.constant(self.beta_2, dtype),
                epsilon=tf.constant(self.epsilon, dtype),
                grad=tf.convert_to_tensor(gradient, dtype),
                use_locking=False,
            )
        self.iterations.assign_add(1)

    def apply(self, grads, trainable_variables=None):
        """Keras 3's spelling: one Adam step for ``grads`` and ``trainable_variables`` (by default the
        variables the optimizer was built with, in that order)."""
        grads = list(grads)
        if trainable_variables is None:
            trainable_variables = self._built
        trainable_variables = list(trainable_variables)
        if len(grads) != len(trainable_variables):
            raise ValueError(f"apply() got {len(grads)} gradients for {len(trainable_variables)} variables")
        self.apply_gradients(zip(grads, trainable_variables))
