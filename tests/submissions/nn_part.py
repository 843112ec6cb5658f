"""Part 2 (tf.nn layers with their own variables): bugs and alternatives."""

from __future__ import annotations

from submissions.common import NN_TESTS, Variant, nn_tests

NN_LAYERS = """
def fully_connected(prev_layer, num_units, is_training):
    weights = nn.get_variable("weights", [prev_layer.shape[-1], num_units],
                              keras.initializers.GlorotUniform())
    linear = tf.matmul(prev_layer, weights)
    {fc_bias}
    return {fc_out}


def conv_layer(prev_layer, layer_depth, is_training):
    strides = 2 if layer_depth % 3 == 0 else 1
    weights = nn.get_variable("weights", [3, 3, prev_layer.shape[-1], layer_depth * 4],
                              keras.initializers.GlorotUniform())
    linear = tf.nn.conv2d(prev_layer, weights, strides=strides, padding="SAME")
    {conv_bias}
    return {conv_out}


def batch_norm(linear, size, axes, is_training, decay={decay}, epsilon={epsilon}):
    gamma = nn.get_variable("gamma", [size], tf.ones)
    beta = nn.get_variable("beta", [size], tf.zeros)
    pop_mean = nn.get_variable("pop_mean", [size], tf.zeros, trainable={pop_trainable})
    pop_variance = nn.get_variable("pop_variance", [size], {var_init}, trainable={pop_trainable})
{body}
"""

CORRECT = """
    if is_training:
        batch_mean, batch_variance = tf.nn.moments(linear, axes)
        pop_mean.assign(pop_mean * decay + batch_mean * (1 - decay))
        pop_variance.assign(pop_variance * decay + batch_variance * (1 - decay))
        return tf.nn.batch_normalization(linear, batch_mean, batch_variance, beta, gamma, epsilon)
    return tf.nn.batch_normalization(linear, pop_mean, pop_variance, beta, gamma, epsilon)
"""
UPDATE_MEAN = "        pop_mean.assign(pop_mean * decay + batch_mean * (1 - decay))\n"
UPDATE_VAR = "        pop_variance.assign(pop_variance * decay + batch_variance * (1 - decay))\n"
TRAIN_NORM = "return tf.nn.batch_normalization(linear, batch_mean, batch_variance, beta, gamma, epsilon)"
INFER_NORM = "return tf.nn.batch_normalization(linear, pop_mean, pop_variance, beta, gamma, epsilon)"


def nn_layers(
    body=CORRECT,
    decay="0.99",
    epsilon="1e-3",
    pop_trainable="False",
    bias=False,
    relu_first=False,
    conv_axes="[0, 1, 2]",
    relu="tf.nn.relu",
    var_init="tf.ones",
):
    def out(axes, size):
        if relu_first:
            return f"batch_norm({relu}(linear), {size}, {axes}, is_training)"
        return f"{relu}(batch_norm(linear, {size}, {axes}, is_training))"

    def bias_line(size):
        return f'linear = linear + nn.get_variable("bias", [{size}], tf.zeros)' if bias else ""

    return {
        "nn_layers": NN_LAYERS.format(
            fc_bias=bias_line("num_units"),
            fc_out=out("[0]", "num_units"),
            conv_bias=bias_line("layer_depth * 4"),
            conv_out=out(conv_axes, "layer_depth * 4"),
            decay=decay,
            epsilon=epsilon,
            pop_trainable=pop_trainable,
            body=body.rstrip(),
            var_init=var_init,
        )
    }


def body(*replacements) -> str:
    text = CORRECT
    for old, new in zip(replacements[::2], replacements[1::2]):
        assert old in text, old
        text = text.replace(old, new)
    return text


def variables_shaped(shape: str) -> dict:
    """The correct layers, with gamma, beta, pop_mean and pop_variance created in the shape ``shape``."""
    layers = nn_layers()
    assert layers["nn_layers"].count("[size]") == 4
    return {"nn_layers": layers["nn_layers"].replace("[size]", shape)}


BY_HAND_TF_COND = """
    def train():
        batch_mean, batch_variance = tf.nn.moments(linear, axes)
        with tf.control_dependencies([pop_mean.assign(pop_mean * decay + batch_mean * (1 - decay)),
                                      pop_variance.assign(pop_variance * decay + batch_variance * (1 - decay))]):
            return (linear - batch_mean) / tf.sqrt(batch_variance + epsilon) * gamma + beta

    def infer():
        return (linear - pop_mean) / tf.sqrt(pop_variance + epsilon) * gamma + beta

    return tf.cond(tf.constant(is_training), train, infer)
"""

UPDATE_ALWAYS = """
    batch_mean, batch_variance = tf.nn.moments(linear, axes)
    pop_mean.assign(pop_mean * decay + batch_mean * (1 - decay))
    pop_variance.assign(pop_variance * decay + batch_variance * (1 - decay))
    if is_training:
        return tf.nn.batch_normalization(linear, batch_mean, batch_variance, beta, gamma, epsilon)
    return tf.nn.batch_normalization(linear, pop_mean, pop_variance, beta, gamma, epsilon)
"""

NUMPY_MOMENTS = """
    import numpy as np
    values = np.asarray(linear)  # a tensor's values: works eagerly only
    if is_training:
        batch_mean = tf.constant(values.mean(axis=tuple(axes)), tf.float32)
        batch_variance = tf.constant(values.var(axis=tuple(axes)), tf.float32)
        pop_mean.assign(pop_mean * decay + batch_mean * (1 - decay))
        pop_variance.assign(pop_variance * decay + batch_variance * (1 - decay))
        return tf.nn.batch_normalization(linear, batch_mean, batch_variance, beta, gamma, epsilon)
    return tf.nn.batch_normalization(linear, pop_mean, pop_variance, beta, gamma, epsilon)
"""

NN_BUGS = [
    Variant(
        "nn_no_population_update",
        nn_layers(body(UPDATE_MEAN, "", UPDATE_VAR, "")),
        nn_tests(whats=("population",)),
        "pop_mean and pop_variance never updated",
    ),
    Variant(
        "nn_conv_moments_over_batch_axis_only",
        nn_layers(conv_axes="[0]"),
        nn_tests(parts=("conv",), whats=("population", "training_output", "inference_output")),
        "conv moments over axis 0 only (per position, not per feature map)",
    ),
    Variant(
        "nn_batch_statistics_at_inference",
        nn_layers(
            body("    " + INFER_NORM, "    batch_mean, batch_variance = tf.nn.moments(linear, axes)\n    " + TRAIN_NORM)
        ),
        nn_tests(whats=("inference_output",)),
        "inference normalizes with the batch statistics",
    ),
    Variant(
        "nn_decay_wrong_way_round",
        nn_layers(
            body(
                "pop_mean * decay + batch_mean * (1 - decay)",
                "pop_mean * (1 - decay) + batch_mean * decay",
                "pop_variance * decay + batch_variance * (1 - decay)",
                "pop_variance * (1 - decay) + batch_variance * decay",
            )
        ),
        nn_tests(whats=("population",)),
        "pop = pop * (1 - decay) + batch * decay",
    ),
    Variant(
        "nn_variance_instead_of_standard_deviation",
        nn_layers(
            body(
                TRAIN_NORM,
                "return gamma * (linear - batch_mean) / (batch_variance + epsilon) + beta",
                INFER_NORM,
                "return gamma * (linear - pop_mean) / (pop_variance + epsilon) + beta",
            )
        ),
        nn_tests(whats=("training_output", "inference_output")),
        "divides by the variance instead of its square root",
    ),
    Variant(
        "nn_population_statistics_trainable",
        nn_layers(pop_trainable="True"),
        nn_tests(whats=("variables",)),
        "pop_mean and pop_variance created trainable",
    ),
    Variant(
        "nn_updates_during_inference",
        nn_layers(UPDATE_ALWAYS),
        nn_tests(whats=("inference_output",)),
        "population statistics also updated at inference",
    ),
    Variant(
        "nn_stop_gradient_on_batch_statistics",
        nn_layers(
            body(
                "batch_mean, batch_variance = tf.nn.moments(linear, axes)\n",
                "batch_mean, batch_variance = tf.nn.moments(linear, axes)\n"
                "        batch_mean, batch_variance = tf.stop_gradient(batch_mean), tf.stop_gradient(batch_variance)\n",
            )
        ),
        nn_tests(whats=("training_output",)),
        "no gradient through the batch mean and variance",
    ),
    Variant(
        "nn_no_relu",
        nn_layers(relu=""),
        nn_tests(whats=("training_output", "inference_output")),
        "linear then batch normalization, never the ReLU",
    ),
    Variant(
        "nn_accumulates_statistics_of_another_tensor",
        nn_layers(
            body(
                UPDATE_MEAN,
                "        relu_mean, relu_variance = tf.nn.moments(tf.nn.relu(linear), axes)\n"
                "        pop_mean.assign(pop_mean * decay + relu_mean * (1 - decay))\n",
                UPDATE_VAR,
                "        pop_variance.assign(pop_variance * decay + relu_variance * (1 - decay))\n",
            )
        ),
        nn_tests(whats=("population",)),
        "normalizes the linear output, accumulates the statistics of its ReLU",
    ),
    Variant(
        "nn_numpy_on_tensors",
        nn_layers(NUMPY_MOMENTS),
        NN_TESTS,
        "NumPy on tensors: runs eagerly, fails inside tf.function",
    ),
    Variant(
        "nn_wrong_initial_variance",
        nn_layers(var_init="tf.zeros"),
        nn_tests(whats=("variables",)),
        "pop_variance starts at zeros",
    ),
    Variant(
        "nn_gamma_never_used",
        nn_layers(
            body(
                TRAIN_NORM,
                "return tf.nn.batch_normalization(linear, batch_mean, batch_variance, beta, None, epsilon)",
                INFER_NORM,
                "return tf.nn.batch_normalization(linear, pop_mean, pop_variance, beta, None, epsilon)",
            )
        ),
        nn_tests(whats=("training_output", "inference_output")),
        "gamma created but never used",
    ),
    Variant(
        "nn_standard_deviation_stored",
        nn_layers(
            body(
                "pop_variance * decay + batch_variance * (1 - decay)",
                "pop_variance * decay + tf.sqrt(batch_variance) * (1 - decay)",
            )
        ),
        nn_tests(whats=("population",)),
        "keeps a moving average of the standard deviation",
    ),
    Variant(
        "nn_variables_shape_1_by_c",
        variables_shaped("[1, size]"),
        NN_TESTS,
        "gamma, beta and the population statistics created with shape (1, C) instead of (C,)",
    ),
    Variant(
        "nn_conv_variables_per_position",
        variables_shaped("linear.shape[1:]"),
        nn_tests(parts=("conv",)),
        "conv: gamma, beta and the population statistics of shape (H, W, C), one per position and feature map",
    ),
    Variant(
        "nn_leaky_relu",
        nn_layers(relu="tf.nn.leaky_relu"),
        nn_tests(whats=("training_output", "inference_output")),
        "a LeakyReLU in place of the ReLU (the normalization is right)",
    ),
    Variant(
        "nn_conv_moments_over_all_four_axes",
        nn_layers(conv_axes="[0, 1, 2, 3]"),
        nn_tests(parts=("conv",), whats=("population", "training_output")),
        "conv moments over all four axes: one mean and variance shared by every feature map",
    ),
    Variant(
        "nn_gamma_starts_at_zero",
        {"nn_layers": nn_layers()["nn_layers"].replace('"gamma", [size], tf.ones', '"gamma", [size], tf.zeros')},
        nn_tests(whats=("variables", "training_output")),
        "gamma starts at zero: every ReLU outputs zero and no gradient reaches the weights",
    ),
    Variant(
        "nn_decay_barely_moves",
        nn_layers(decay="0.99999"),
        nn_tests(whats=("population",)),
        "decay 0.99999: after the run's 800 batches the statistics are still almost their initial 0 and 1",
    ),
]

UNBIASED = """
    if is_training:
        batch_mean, batch_variance = tf.nn.moments(linear, axes)
        count = tf.cast(tf.size(linear) // tf.size(batch_mean), tf.float32)
        unbiased = batch_variance * count / (count - 1.0)
        pop_mean.assign(pop_mean * decay + batch_mean * (1 - decay))
        pop_variance.assign(pop_variance * decay + unbiased * (1 - decay))
        return tf.nn.batch_normalization(linear, batch_mean, {train_var}, beta, gamma, epsilon)
    return tf.nn.batch_normalization(linear, pop_mean, pop_variance, beta, gamma, epsilon)
"""

BY_HAND_KEEPDIMS = """
    if not is_training:
        return gamma * (linear - pop_mean) * tf.math.rsqrt(pop_variance + epsilon) + beta
    mean = tf.reduce_mean(linear, axis=axes, keepdims=True)
    variance = tf.reduce_mean(tf.square(linear - mean), axis=axes, keepdims=True)
    pop_mean.assign_sub((1 - decay) * (pop_mean - tf.reshape(mean, [-1])))
    pop_variance.assign_sub((1 - decay) * (pop_variance - tf.reshape(variance, [-1])))
    return gamma * (linear - mean) / tf.sqrt(variance + epsilon) + beta
"""

NN_ALTERNATIVES = [
    Variant("alt_nn_bias_kept_bn_before_relu", nn_layers(bias=True), frozenset(), "bias kept, BN before the ReLU"),
    Variant(
        "alt_nn_bias_and_relu_before_bn",
        nn_layers(bias=True, relu_first=True),
        frozenset(),
        "bias and ReLU before batch normalization",
    ),
    Variant(
        "alt_nn_relu_first_by_hand_tf_cond_decay_0_9",
        nn_layers(BY_HAND_TF_COND, decay="0.9", relu_first=True),
        frozenset(),
        "ReLU before batch normalization; formula by hand, tf.cond, decay 0.9",
    ),
    Variant(
        "alt_nn_bessel_corrected_population_variance",
        nn_layers(UNBIASED.format(train_var="batch_variance")),
        frozenset(),
        "population variance with Bessel's correction, as the paper's inference and PyTorch do",
    ),
    Variant(
        "alt_nn_unbiased_variance_everywhere",
        nn_layers(UNBIASED.format(train_var="unbiased")),
        frozenset(),
        "the unbiased variance in training normalization too",
    ),
    Variant(
        "alt_nn_keepdims_assign_sub_epsilon_1e_5",
        nn_layers(BY_HAND_KEEPDIMS, epsilon="1e-5", decay="0.95"),
        frozenset(),
        "reduce_mean with keepdims, assign_sub update, epsilon 1e-5, decay 0.95",
    ),
    Variant(
        "alt_nn_decay_0_999",
        nn_layers(decay="0.999"),
        frozenset(),
        "decay 0.999: slow, but the population statistics still move within the run",
    ),
]
