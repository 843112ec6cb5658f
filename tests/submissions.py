"""Student submissions for the grading tests: the solution's answer cells with one bug each, and
the alternative placements that must still get full marks.

Each variant is ``{grade_id: cell source}`` to put in place of the solution's answer cells, plus
the test cells that must fail. ``tests/test_grading.py`` runs the checks on them in-process;
``tests/test_pipeline.py`` grades them with the real nbgrader pipeline.
"""
from __future__ import annotations

import dataclasses

KERAS_LAYER = '''
def fully_connected(prev_layer, num_units):
    {fc}


def conv_layer(prev_layer, layer_depth):
    strides = 2 if layer_depth % 3 == 0 else 1
    {conv}
'''

KERAS_TRAINING = '''
def train_step(model, optimizer, images, labels):
    with tf.GradientTape() as tape:
        logits = {train_call}
        loss = training.loss_fn(logits, labels)
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    return loss, logits


def predict(model, images):
    return {predict_call}
'''


def keras_layers(fc: str, conv: str) -> str:
    return KERAS_LAYER.format(fc=fc, conv=conv)


def keras_bn(linear_fc="keras.layers.Dense(num_units, use_bias=False)",
             linear_conv='keras.layers.Conv2D(layer_depth * 4, 3, strides=strides, padding="same", use_bias=False)',
             norm="keras.layers.BatchNormalization()", relu_first=False):
    def body(linear):
        if relu_first:
            return f"return {norm}(keras.layers.ReLU()({linear}(prev_layer)))"
        return f"return keras.layers.ReLU()({norm}({linear}(prev_layer)))"
    return keras_layers(body(linear_fc), body(linear_conv))


NN_LAYERS = '''
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


def batch_norm(linear, size, axes, is_training, decay={decay}, epsilon=1e-3):
    gamma = nn.get_variable("gamma", [size], tf.ones)
    beta = nn.get_variable("beta", [size], tf.zeros)
    pop_mean = nn.get_variable("pop_mean", [size], tf.zeros, trainable={pop_trainable})
    pop_variance = nn.get_variable("pop_variance", [size], tf.ones, trainable={pop_trainable})
{body}
'''

NN_BODY_CORRECT = '''
    if is_training:
        batch_mean, batch_variance = tf.nn.moments(linear, axes)
        pop_mean.assign(pop_mean * decay + batch_mean * (1 - decay))
        pop_variance.assign(pop_variance * decay + batch_variance * (1 - decay))
        return tf.nn.batch_normalization(linear, batch_mean, batch_variance, beta, gamma, epsilon)
    return tf.nn.batch_normalization(linear, pop_mean, pop_variance, beta, gamma, epsilon)
'''


def nn_layers(body=NN_BODY_CORRECT, decay="0.99", pop_trainable="False", bias=False, relu_first=False,
              conv_axes="[0, 1, 2]"):
    def out(axes, size):
        if relu_first:
            return f"batch_norm(tf.nn.relu(linear), {size}, {axes}, is_training)"
        return f"tf.nn.relu(batch_norm(linear, {size}, {axes}, is_training))"

    def bias_line(size):
        if not bias:
            return ""
        return f'linear = linear + nn.get_variable("bias", [{size}], tf.zeros)'

    return NN_LAYERS.format(fc_bias=bias_line("num_units"), fc_out=out("[0]", "num_units"),
                            conv_bias=bias_line("layer_depth * 4"), conv_out=out(conv_axes, "layer_depth * 4"),
                            decay=decay, pop_trainable=pop_trainable, body=body.rstrip())


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    cells: dict
    fails: frozenset  # grade ids of the test cells that must fail; all others must pass
    description: str = ""


def _keras_layer_tests():
    return {f"test_keras_{part}_{what}" for part in ("fc", "conv") for what in ("structure", "population", "outputs")}


def _nn_tests(parts=("fc", "conv"), whats=("variables", "population", "training_output", "inference_output")):
    return {f"test_nn_{part}_{what}" for part in parts for what in whats}


CORRECT_TRAINING = KERAS_TRAINING.format(train_call="model(images, training=True)",
                                         predict_call="model(images, training=False)")

# --- bugs: each must lose the points of the tests that name it -------------------------------
BUGS = [
    Variant("keras_no_batch_norm",
            {"keras_layers": keras_layers(
                'return keras.layers.Dense(num_units, activation="relu")(prev_layer)',
                'return keras.layers.Conv2D(layer_depth * 4, 3, strides=strides, padding="same", activation="relu")(prev_layer)')},
            frozenset(_keras_layer_tests() | {"test_keras_train_step", "test_keras_predict"}),
            "Part 1 layers left without batch normalization"),
    Variant("keras_training_flag_never_set",
            {"keras_training": KERAS_TRAINING.format(train_call="model(images)", predict_call="model(images)")},
            frozenset({"test_keras_train_step"}),
            "train_step calls the model without training=True: statistics never update"),
    Variant("keras_predict_with_batch_statistics",
            {"keras_training": KERAS_TRAINING.format(train_call="model(images, training=True)",
                                                     predict_call="model(images, training=True)")},
            frozenset({"test_keras_predict"}),
            "predict runs the model in training mode"),
    Variant("keras_momentum_wrong_way_round",
            {"keras_layers": keras_bn(norm="keras.layers.BatchNormalization(momentum=0.01)")},
            frozenset({"test_keras_fc_population", "test_keras_conv_population"}),
            "Keras momentum 0.01: the decay applied the wrong way round"),
    Variant("keras_conv_statistics_wrong_axis",
            {"keras_layers": keras_layers(
                "return keras.layers.ReLU()(keras.layers.BatchNormalization()("
                "keras.layers.Dense(num_units, use_bias=False)(prev_layer)))",
                "return keras.layers.ReLU()(keras.layers.BatchNormalization(axis=1)("
                'keras.layers.Conv2D(layer_depth * 4, 3, strides=strides, padding="same", use_bias=False)(prev_layer)))')},
            frozenset({"test_keras_conv_structure", "test_keras_conv_population", "test_keras_conv_outputs"}),
            "conv statistics per row instead of per feature map"),
    Variant("nn_no_population_update",
            {"nn_layers": nn_layers(body=NN_BODY_CORRECT.replace("        pop_mean.assign(pop_mean * decay + batch_mean * (1 - decay))\n", "")
                                    .replace("        pop_variance.assign(pop_variance * decay + batch_variance * (1 - decay))\n", ""))},
            frozenset(_nn_tests(whats=("population",))),
            "pop_mean and pop_variance never updated"),
    Variant("nn_conv_moments_over_batch_axis_only",
            {"nn_layers": nn_layers(conv_axes="[0]")},
            frozenset(_nn_tests(parts=("conv",), whats=("population", "training_output", "inference_output"))),
            "conv moments over axis 0 only (per position, not per feature map)"),
    Variant("nn_batch_statistics_at_inference",
            {"nn_layers": nn_layers(body=NN_BODY_CORRECT.replace(
                "    return tf.nn.batch_normalization(linear, pop_mean, pop_variance, beta, gamma, epsilon)",
                "    batch_mean, batch_variance = tf.nn.moments(linear, axes)\n"
                "    return tf.nn.batch_normalization(linear, batch_mean, batch_variance, beta, gamma, epsilon)"))},
            frozenset(_nn_tests(whats=("inference_output",))),
            "inference normalizes with the batch statistics"),
    Variant("nn_decay_wrong_way_round",
            {"nn_layers": nn_layers(body=NN_BODY_CORRECT.replace("pop_mean * decay + batch_mean * (1 - decay)",
                                                                 "pop_mean * (1 - decay) + batch_mean * decay")
                                    .replace("pop_variance * decay + batch_variance * (1 - decay)",
                                             "pop_variance * (1 - decay) + batch_variance * decay"))},
            frozenset(_nn_tests(whats=("population",))),
            "pop = pop * (1 - decay) + batch * decay"),
    Variant("nn_variance_instead_of_standard_deviation",
            {"nn_layers": nn_layers(body=NN_BODY_CORRECT.replace(
                "return tf.nn.batch_normalization(linear, batch_mean, batch_variance, beta, gamma, epsilon)",
                "return gamma * (linear - batch_mean) / (batch_variance + epsilon) + beta").replace(
                "return tf.nn.batch_normalization(linear, pop_mean, pop_variance, beta, gamma, epsilon)",
                "return gamma * (linear - pop_mean) / (pop_variance + epsilon) + beta"))},
            frozenset(_nn_tests(whats=("training_output", "inference_output"))),
            "divides by the variance instead of its square root"),
    Variant("nn_population_statistics_trainable",
            {"nn_layers": nn_layers(pop_trainable="True")},
            frozenset(_nn_tests(whats=("variables",))),
            "pop_mean and pop_variance created trainable"),
    Variant("nn_updates_during_inference",
            {"nn_layers": nn_layers(body='''
    batch_mean, batch_variance = tf.nn.moments(linear, axes)
    pop_mean.assign(pop_mean * decay + batch_mean * (1 - decay))
    pop_variance.assign(pop_variance * decay + batch_variance * (1 - decay))
    if is_training:
        return tf.nn.batch_normalization(linear, batch_mean, batch_variance, beta, gamma, epsilon)
    return tf.nn.batch_normalization(linear, pop_mean, pop_variance, beta, gamma, epsilon)
''')},
            frozenset(_nn_tests(whats=("variables", "inference_output"))),
            "population statistics also updated at inference"),
]

# --- alternatives that must get full marks ----------------------------------------------------
NN_BY_HAND_TF_COND = '''
    def train():
        batch_mean, batch_variance = tf.nn.moments(linear, axes)
        with tf.control_dependencies([pop_mean.assign(pop_mean * decay + batch_mean * (1 - decay)),
                                      pop_variance.assign(pop_variance * decay + batch_variance * (1 - decay))]):
            return (linear - batch_mean) / tf.sqrt(batch_variance + epsilon) * gamma + beta

    def infer():
        return (linear - pop_mean) / tf.sqrt(pop_variance + epsilon) * gamma + beta

    return tf.cond(tf.constant(is_training), train, infer)
'''

ALTERNATIVES = [
    Variant("alt_bias_kept_bn_before_relu",
            {"keras_layers": keras_bn(linear_fc="keras.layers.Dense(num_units)",
                                      linear_conv='keras.layers.Conv2D(layer_depth * 4, 3, strides=strides, padding="same")'),
             "nn_layers": nn_layers(bias=True)},
            frozenset(), "bias kept, batch normalization before the ReLU"),
    Variant("alt_bias_and_relu_before_bn",
            {"keras_layers": keras_bn(linear_fc="keras.layers.Dense(num_units)",
                                      linear_conv='keras.layers.Conv2D(layer_depth * 4, 3, strides=strides, padding="same")',
                                      relu_first=True),
             "nn_layers": nn_layers(bias=True, relu_first=True)},
            frozenset(), "bias and ReLU before batch normalization"),
    Variant("alt_relu_before_bn_no_bias_by_hand_tf_cond_decay_0_9",
            {"keras_layers": keras_bn(relu_first=True, norm="keras.layers.BatchNormalization(momentum=0.9)"),
             "nn_layers": nn_layers(body=NN_BY_HAND_TF_COND, decay="0.9", relu_first=True)},
            frozenset(), "ReLU before batch normalization without bias; formula by hand, tf.cond, decay 0.9"),
]

ALL_TESTS = frozenset(
    {f"test_keras_{p}_{w}" for p in ("fc", "conv") for w in ("structure", "population", "outputs")}
    | {"test_keras_train_step", "test_keras_predict"} | _nn_tests())
