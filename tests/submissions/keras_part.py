"""Part 1 (Keras layers, train_step), the prediction questions and the diagnose task: bugs and alternatives."""

from __future__ import annotations

from submissions.common import KERAS_LAYER_TESTS, Variant

DENSE = "keras.layers.Dense(num_units, use_bias=False)"
CONV = 'keras.layers.Conv2D(layer_depth * 4, 3, strides=strides, padding="same", use_bias=False)'
DENSE_BIAS = "keras.layers.Dense(num_units)"
CONV_BIAS = 'keras.layers.Conv2D(layer_depth * 4, 3, strides=strides, padding="same")'

KERAS_LAYERS = """
def fully_connected(prev_layer, num_units):
    {fc}


def conv_layer(prev_layer, layer_depth):
    strides = 2 if layer_depth % 3 == 0 else 1
    {conv}
"""


def keras_layers(fc: str, conv: str) -> str:
    return KERAS_LAYERS.format(fc=fc, conv=conv)


def keras_bn(
    linear_fc=DENSE,
    linear_conv=CONV,
    norm="keras.layers.BatchNormalization()",
    relu_first=False,
    relu="keras.layers.ReLU()",
):
    def body(linear):
        if relu_first:
            return f"return {norm}({relu}({linear}(prev_layer)))"
        return f"return {relu}({norm}({linear}(prev_layer)))"

    return keras_layers(body(linear_fc), body(linear_conv))


def both(body_fn) -> str:
    """The same body for both layer functions; ``body_fn(linear_layer_expression)``."""
    return keras_layers(body_fn(DENSE), body_fn(CONV))


TRAIN_STEP = """
def train_step(model, optimizer, images, labels):
    with tf.GradientTape() as tape:
        logits = {call}
        loss = training.loss_fn(logits, labels)
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    return loss, logits
"""


def train_step(call="model(images, training=True)") -> str:
    return TRAIN_STEP.format(call=call)


def fix(body: str) -> str:
    return "def fixed_fully_connected(prev_layer, num_units):\n" + body


CUSTOM_LAYER = '''
class NormalizedDense(keras.layers.Layer):
    """A linear layer, batch normalization and a ReLU, as one custom Keras layer."""

    def __init__(self, linear, **kwargs):
        super().__init__(**kwargs)
        self.linear = linear
        self.norm = keras.layers.BatchNormalization()

    def call(self, inputs, training=None):
        return tf.nn.relu(self.norm(self.linear(inputs), training=training))


def fully_connected(prev_layer, num_units):
    return NormalizedDense(keras.layers.Dense(num_units, use_bias=False))(prev_layer)


def conv_layer(prev_layer, layer_depth):
    strides = 2 if layer_depth % 3 == 0 else 1
    return NormalizedDense(keras.layers.Conv2D(layer_depth * 4, 3, strides=strides, padding="same",
                                               use_bias=False))(prev_layer)
'''

FROZEN_BLOCK = """
def _frozen(block, prev_layer):
    out = block(prev_layer)
    block.trainable = False  # "the statistics jump around": freeze them
    return out


def fully_connected(prev_layer, num_units):
    return _frozen(keras.Sequential([keras.layers.Dense(num_units, use_bias=False), keras.layers.BatchNormalization(),
                                     keras.layers.ReLU()]), prev_layer)


def conv_layer(prev_layer, layer_depth):
    strides = 2 if layer_depth % 3 == 0 else 1
    return _frozen(keras.Sequential([keras.layers.Conv2D(layer_depth * 4, 3, strides=strides, padding="same",
                                                         use_bias=False),
                                     keras.layers.BatchNormalization(), keras.layers.ReLU()]), prev_layer)
"""

OWN_OPTIMIZER = """
own_optimizer = keras.optimizers.SGD(0.1)


def train_step(model, optimizer, images, labels):
    with tf.GradientTape() as tape:
        logits = model(images, training=True)
        loss = training.loss_fn(logits, labels)
    gradients = tape.gradient(loss, model.trainable_variables)
    own_optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    return loss, logits
"""

CACHED_LAYERS = """
_built = {}


def _layers(key, make):
    if key not in _built:  # built once, handed out again to every later call
        _built[key] = make()
    return _built[key]


def fully_connected(prev_layer, num_units):
    linear, norm = _layers(("fc", num_units, prev_layer.shape[-1]), lambda: (
        keras.layers.Dense(num_units, use_bias=False), keras.layers.BatchNormalization()))
    return keras.layers.ReLU()(norm(linear(prev_layer)))


def conv_layer(prev_layer, layer_depth):
    strides = 2 if layer_depth % 3 == 0 else 1
    linear, norm = _layers(("conv", layer_depth, prev_layer.shape[-1]), lambda: (
        keras.layers.Conv2D(layer_depth * 4, 3, strides=strides, padding="same", use_bias=False),
        keras.layers.BatchNormalization()))
    return keras.layers.ReLU()(norm(linear(prev_layer)))
"""

SHARED_RELU = """
relu = keras.layers.ReLU()


def fully_connected(prev_layer, num_units):
    return relu(keras.layers.BatchNormalization()(keras.layers.Dense(num_units, use_bias=False)(prev_layer)))


def conv_layer(prev_layer, layer_depth):
    strides = 2 if layer_depth % 3 == 0 else 1
    linear = keras.layers.Conv2D(layer_depth * 4, 3, strides=strides, padding="same", use_bias=False)
    return relu(keras.layers.BatchNormalization()(linear(prev_layer)))
"""

K = "test_keras_train_step"
KERAS_BUGS = [
    Variant(
        "keras_no_batch_norm",
        {
            "keras_layers": keras_layers(
                'return keras.layers.Dense(num_units, activation="relu")(prev_layer)',
                'return keras.layers.Conv2D(layer_depth * 4, 3, strides=strides, padding="same", activation="relu")(prev_layer)',
            )
        },
        KERAS_LAYER_TESTS,
        "Part 1 layers left without batch normalization",
    ),
    Variant(
        "keras_no_relu",
        {"keras_layers": both(lambda lin: f"return keras.layers.BatchNormalization()({lin}(prev_layer))")},
        frozenset({"test_keras_fc_outputs", "test_keras_conv_outputs"}),
        "linear then batch normalization, the nonlinearity never applied",
    ),
    Variant(
        "keras_bn_before_the_linear_layer",
        {
            "keras_layers": keras_layers(
                'return keras.layers.Dense(num_units, activation="relu")(keras.layers.BatchNormalization()(prev_layer))',
                'return keras.layers.Conv2D(layer_depth * 4, 3, strides=strides, padding="same", activation="relu")('
                "keras.layers.BatchNormalization()(prev_layer))",
            )
        },
        KERAS_LAYER_TESTS,
        "normalizes the layer's input instead of its output",
    ),
    Variant(
        "keras_two_batch_norms",
        {
            "keras_layers": keras_bn(
                norm="(lambda t: keras.layers.BatchNormalization()(keras.layers.BatchNormalization()(t)))"
            )
        },
        KERAS_LAYER_TESTS,
        "two BatchNormalization layers in a row",
    ),
    Variant(
        "keras_momentum_wrong_way_round",
        {"keras_layers": keras_bn(norm="keras.layers.BatchNormalization(momentum=0.01)")},
        frozenset({"test_keras_fc_population", "test_keras_conv_population"}),
        "Keras momentum 0.01: the decay applied the wrong way round",
    ),
    Variant(
        "keras_conv_statistics_wrong_axis",
        {
            "keras_layers": keras_layers(
                f"return keras.layers.ReLU()(keras.layers.BatchNormalization()({DENSE}(prev_layer)))",
                f"return keras.layers.ReLU()(keras.layers.BatchNormalization(axis=1)({CONV}(prev_layer)))",
            )
        },
        frozenset({"test_keras_conv_structure", "test_keras_conv_population", "test_keras_conv_outputs"}),
        "conv statistics per row instead of per feature map",
    ),
    Variant(
        "keras_training_flag_never_set",
        {"keras_training": train_step("model(images)")},
        frozenset({K}),
        "train_step calls the model in inference mode: statistics never update",
    ),
    Variant(
        "keras_loss_from_inference_pass",
        {
            "keras_training": """
def train_step(model, optimizer, images, labels):
    model(images, training=True)  # updates the statistics ...
    with tf.GradientTape() as tape:
        logits = model(images, training=False)  # ... but the loss comes from inference mode
        loss = training.loss_fn(logits, labels)
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    return loss, logits
"""
        },
        frozenset({K}),
        "statistics updated by a training pass, loss from an inference-mode pass",
    ),
    Variant(
        "keras_two_training_passes",
        {
            "keras_training": """
def train_step(model, optimizer, images, labels):
    model(images, training=True)
    with tf.GradientTape() as tape:
        logits = model(images, training=True)
        loss = training.loss_fn(logits, labels)
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    return loss, logits
"""
        },
        frozenset({K}),
        "two training-mode passes per step: the statistics move twice",
    ),
    Variant(
        "keras_gradients_never_applied",
        {
            "keras_training": """
def train_step(model, optimizer, images, labels):
    with tf.GradientTape() as tape:
        logits = model(images, training=True)
        loss = training.loss_fn(logits, labels)
    gradients = tape.gradient(loss, model.trainable_variables)
    return loss, logits
"""
        },
        frozenset({K}),
        "forgets to apply the gradients",
    ),
    Variant(
        "keras_train_step_eager_only",
        {
            "keras_training": TRAIN_STEP.format(call="model(images, training=True)").replace(
                "return loss, logits", "return float(loss.numpy()), logits"
            )
        },
        frozenset({K}),
        ".numpy() in train_step: fails inside tf.function",
    ),
    Variant(
        "keras_train_step_returns_loss_only",
        {"keras_training": train_step().replace("return loss, logits", "return loss")},
        frozenset({K}),
        "returns the loss only",
    ),
    Variant(
        "keras_hard_coded_training_flag",
        {
            "keras_layers": both(
                lambda lin: (
                    f"return keras.layers.ReLU()(keras.layers.BatchNormalization()({lin}(prev_layer), training=True))"
                )
            )
        },
        frozenset({"test_keras_fc_outputs", "test_keras_conv_outputs"}),
        "BatchNormalization()(x, training=True) fixed in the layer functions (the TF1 habit): batch statistics "
        "when the notebook's predict calls model(images)",
    ),
    Variant(
        "keras_hard_coded_training_flag_conv_only",
        {
            "keras_layers": keras_layers(
                f"return keras.layers.ReLU()(keras.layers.BatchNormalization()({DENSE}(prev_layer)))",
                f"return keras.layers.ReLU()(keras.layers.BatchNormalization()({CONV}(prev_layer), training=True))",
            )
        },
        frozenset({"test_keras_conv_outputs"}),
        "training=True fixed in conv_layer only",
    ),
    Variant(
        "keras_hard_coded_training_flag_custom_layer",
        {
            "keras_layers": CUSTOM_LAYER.replace(
                "self.norm(self.linear(inputs), training=training)", "self.norm(self.linear(inputs), training=True)"
            )
        },
        frozenset({"test_keras_fc_outputs", "test_keras_conv_outputs"}),
        "a custom layer that ignores its training argument and always trains its BatchNormalization",
    ),
    Variant(
        "keras_frozen_batch_norm",
        {"keras_layers": keras_bn(norm="keras.layers.BatchNormalization(trainable=False)")},
        KERAS_LAYER_TESTS,
        "BatchNormalization(trainable=False): Keras runs a frozen layer in inference mode",
    ),
    Variant(
        "keras_frozen_block",
        {"keras_layers": FROZEN_BLOCK},
        KERAS_LAYER_TESTS,
        "the layer's block frozen with trainable=False after it was built",
    ),
    Variant(
        "keras_conv_axis_list",
        {
            "keras_layers": keras_layers(
                f"return keras.layers.ReLU()(keras.layers.BatchNormalization()({DENSE}(prev_layer)))",
                f"return keras.layers.ReLU()(keras.layers.BatchNormalization(axis=[0, 1, 2])({CONV}(prev_layer)))",
            )
        },
        frozenset({"test_keras_conv_structure", "test_keras_conv_population", "test_keras_conv_outputs"}),
        "conv BatchNormalization(axis=[0, 1, 2]): the axes of tf.nn.moments, not Keras' kept axis",
    ),
    Variant(
        "keras_conv_axis_height",
        {
            "keras_layers": keras_layers(
                f"return keras.layers.ReLU()(keras.layers.BatchNormalization()({DENSE}(prev_layer)))",
                f"return keras.layers.ReLU()(keras.layers.BatchNormalization(axis=-2)({CONV}(prev_layer)))",
            )
        },
        frozenset({"test_keras_conv_structure", "test_keras_conv_population", "test_keras_conv_outputs"}),
        "conv statistics per column (axis=-2) instead of per feature map",
    ),
    Variant(
        "keras_dense_axis_0",
        {
            "keras_layers": keras_layers(
                f"return keras.layers.ReLU()(keras.layers.BatchNormalization(axis=0)({DENSE}(prev_layer)))",
                f"return keras.layers.ReLU()(keras.layers.BatchNormalization()({CONV}(prev_layer)))",
            )
        },
        frozenset({"test_keras_fc_structure", "test_keras_fc_population", "test_keras_fc_outputs"}),
        "dense BatchNormalization(axis=0): the axis averaged over (tf.nn.moments' habit), not the kept one",
    ),
    Variant(
        "keras_train_step_own_optimizer",
        {"keras_training": OWN_OPTIMIZER},
        frozenset({K}),
        "train_step ignores the optimizer it is given and steps with an SGD of its own",
    ),
    Variant(
        "keras_train_step_applies_twice",
        {
            "keras_training": train_step().replace(
                "optimizer.apply_gradients(zip(gradients, model.trainable_variables))",
                "optimizer.apply_gradients(zip(gradients, model.trainable_variables))\n"
                "    optimizer.apply(gradients, model.trainable_variables)",
            )
        },
        frozenset({K}),
        "the gradients applied twice, with both of Keras 3's spellings",
    ),
    Variant(
        "q_single_images_wrong_option",
        {"q_single_images_answer": 'ANSWER_SINGLE_IMAGES = questions.find_option("single_images", "15% or lower")'},
        frozenset({"test_q_single_images"}),
        "a wrong prediction (its letter differs per student: the option found by its text, wrong under any id)",
    ),
    Variant(
        "q_single_images_not_an_option",
        {"q_single_images_answer": 'ANSWER_SINGLE_IMAGES = "e"'},
        frozenset({"test_q_single_images"}),
        "an answer that is not an option",
    ),
    Variant(
        "q_statistics_wrong_option",
        {
            "q_statistics_answer": 'batch, height, width, maps = my_layer["shape"]\nANSWER_STATISTICS = batch * height * width * maps'
        },
        frozenset({"test_q_statistics"}),
        "every number of the student's own layer counted: one mean for the whole tensor",
    ),
    Variant(
        "q_plain_network_dead_relus",
        {"q_plain_network_answer": 'ANSWER_PLAIN_NETWORK = questions.find_option("plain_network", "dead")'},
        frozenset({"test_q_plain_network"}),
        "dead ReLUs blamed for the plain network (section 8 refutes it)",
    ),
    Variant(
        "q_diagnose_memory_the_keras_default",
        {"q_diagnose_memory_answer": "ANSWER_DIAGNOSE_MEMORY = 0.01"},
        frozenset({"test_q_diagnose_memory"}),
        "the share a correct Keras layer would have, not the measured one",
    ),
    Variant(
        "q_diagnose_memory_a_number",
        {"q_diagnose_memory_answer": 'ANSWER_DIAGNOSE_MEMORY = "d"'},
        frozenset({"test_q_diagnose_memory"}),
        "a letter instead of the share (a number)",
    ),
    Variant(
        "q_diagnose_memory_the_old_share",
        {
            "q_diagnose_memory_answer": 'row = classmate["trace"][0]\n'
            'ANSWER_DIAGNOSE_MEMORY = 1 - (row["after"] - row["before"]) / (row["batch"] - row["before"])'
        },
        frozenset({"test_q_diagnose_memory"}),
        "the share the population mean keeps of its old value (Keras' momentum), not the new batch's",
    ),
    Variant(
        "q_statistics_the_batch_only",
        {"q_statistics_answer": 'ANSWER_STATISTICS = my_layer["shape"][0]'},
        frozenset({"test_q_statistics"}),
        "one value per image, as for a dense layer",
    ),
    Variant(
        "diagnose_momentum_just_below_the_bound",
        {
            "diagnose_fix": fix(
                '    layer = keras.layers.Dense(num_units, activation="relu")(prev_layer)\n'
                "    return keras.layers.BatchNormalization(momentum=0.45)(layer)\n"
            )
        },
        frozenset({"test_diagnose_fix"}),
        "momentum 0.45: just below the smallest decay the course accepts",
    ),
    Variant(
        "diagnose_normalizes_the_input",
        {
            "diagnose_fix": fix(
                "    layer = keras.layers.BatchNormalization(momentum=0.99)(prev_layer)\n"
                '    return keras.layers.Dense(num_units, activation="relu")(layer)\n'
            )
        },
        frozenset({"test_diagnose_fix"}),
        "the right momentum, on the layer's input instead of its output",
    ),
    Variant(
        "diagnose_momentum_one",
        {
            "diagnose_fix": fix(
                '    layer = keras.layers.Dense(num_units, activation="relu")(prev_layer)\n'
                "    return keras.layers.BatchNormalization(momentum=1.0)(layer)\n"
            )
        },
        frozenset({"test_diagnose_fix"}),
        "momentum 1.0: 'a large enough decay', but the population statistics never move",
    ),
    Variant(
        "diagnose_left_unfixed",
        {
            "diagnose_fix": fix(
                '    layer = keras.layers.Dense(num_units, activation="relu")(prev_layer)\n'
                "    return keras.layers.BatchNormalization(momentum=0.1)(layer)\n"
            )
        },
        frozenset({"test_diagnose_fix"}),
        "the classmate's momentum 0.1 kept",
    ),
    Variant(
        "diagnose_hard_coded_training_flag",
        {
            "diagnose_fix": fix(
                '    layer = keras.layers.Dense(num_units, activation="relu")(prev_layer)\n'
                "    return keras.layers.BatchNormalization(momentum=0.99)(layer, training=True)\n"
            )
        },
        frozenset({"test_diagnose_fix"}),
        "momentum fixed, training=True fixed inside the layer",
    ),
    Variant(
        "diagnose_frozen",
        {
            "diagnose_fix": fix(
                '    layer = keras.layers.Dense(num_units, activation="relu")(prev_layer)\n'
                "    return keras.layers.BatchNormalization(momentum=0.1, trainable=False)(layer)\n"
            )
        },
        frozenset({"test_diagnose_fix"}),
        "the symptom 'fixed' by freezing the layer: it no longer normalizes",
    ),
    Variant(
        "diagnose_fixed_but_linear",
        {
            "diagnose_fix": fix(
                "    layer = keras.layers.Dense(num_units)(prev_layer)\n"
                "    return keras.layers.BatchNormalization(momentum=0.99)(layer)\n"
            )
        },
        frozenset({"test_diagnose_fix"}),
        "momentum fixed, but the ReLU dropped",
    ),
    Variant(
        "keras_gamma_starts_at_zero",
        {"keras_layers": keras_bn(norm='keras.layers.BatchNormalization(gamma_initializer="zeros")')},
        frozenset(
            {"test_keras_fc_structure", "test_keras_conv_structure", "test_keras_fc_outputs", "test_keras_conv_outputs"}
        ),
        "gamma starts at zero: every output is beta, every ReLU outputs zero, no gradient reaches the weights",
    ),
    Variant(
        "keras_no_beta",
        {"keras_layers": keras_bn(norm="keras.layers.BatchNormalization(center=False)")},
        frozenset({"test_keras_fc_structure", "test_keras_conv_structure"}),
        "center=False: no beta takes over the shift of the removed bias",
    ),
    Variant(
        "keras_layers_cached_across_calls",
        {"keras_layers": CACHED_LAYERS},
        KERAS_LAYER_TESTS,
        "layers cached by size and reused by every later call: a second model shares the first's weights and "
        "statistics",
    ),
    Variant(
        "keras_leaky_relu",
        {"keras_layers": keras_bn(relu="keras.layers.LeakyReLU()")},
        frozenset({"test_keras_fc_outputs", "test_keras_conv_outputs"}),
        "a LeakyReLU in place of the ReLU (the normalization is right)",
    ),
    Variant(
        "keras_momentum_barely_moves",
        {"keras_layers": keras_bn(norm="keras.layers.BatchNormalization(momentum=0.99999)")},
        frozenset({"test_keras_fc_population", "test_keras_conv_population"}),
        "momentum 0.99999: after the run's 800 batches the statistics are still almost their initial 0 and 1",
    ),
    Variant(
        "diagnose_momentum_barely_moves",
        {
            "diagnose_fix": fix(
                '    layer = keras.layers.Dense(num_units, activation="relu")(prev_layer)\n'
                "    return keras.layers.BatchNormalization(momentum=0.99999)(layer)\n"
            )
        },
        frozenset({"test_diagnose_fix"}),
        "momentum 0.99999: 'a large enough decay', but the statistics barely move",
    ),
]


KERAS_ALTERNATIVES = [
    Variant(
        "alt_keras_bias_kept_bn_before_relu",
        {"keras_layers": keras_bn(DENSE_BIAS, CONV_BIAS)},
        frozenset(),
        "bias kept, batch normalization before the ReLU",
    ),
    Variant(
        "alt_keras_bias_and_relu_before_bn",
        {"keras_layers": keras_bn(DENSE_BIAS, CONV_BIAS, relu_first=True)},
        frozenset(),
        "bias and ReLU before batch normalization",
    ),
    Variant(
        "alt_keras_relu_before_bn_momentum_0_9",
        {"keras_layers": keras_bn(relu_first=True, norm="keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)")},
        frozenset(),
        "ReLU before batch normalization without bias; momentum 0.9, epsilon 1e-5",
    ),
    Variant(
        "alt_keras_nested_sequential_block",
        {
            "keras_layers": both(
                lambda lin: (
                    f"return keras.Sequential([{lin}, keras.layers.BatchNormalization(), "
                    f"keras.layers.Activation('relu')])(prev_layer)"
                )
            )
        },
        frozenset(),
        "the three layers in a nested keras.Sequential block",
    ),
    Variant(
        "alt_keras_custom_layer",
        {"keras_layers": CUSTOM_LAYER},
        frozenset(),
        "a custom Keras layer holding the linear layer and BatchNormalization",
    ),
    Variant(
        "alt_keras_train_step_decorated",
        {"keras_training": "@tf.function\n" + train_step().lstrip()},
        frozenset(),
        "train_step decorated with @tf.function",
    ),
    Variant(
        "alt_keras_train_step_other_spelling",
        {
            "keras_training": """
def train_step(model, optimizer, images, labels):
    with tf.GradientTape() as tape:
        logits = model(images, training=True)
        loss = training.loss_fn(logits, labels)
    variables = model.trainable_weights
    optimizer.apply(tape.gradient(loss, variables), variables)
    return (loss, logits)
"""
        },
        frozenset(),
        "optimizer.apply and trainable_weights",
    ),
    Variant(
        "alt_keras_train_step_apply_built_variables",
        {
            "keras_training": train_step().replace(
                "optimizer.apply_gradients(zip(gradients, model.trainable_variables))", "optimizer.apply(gradients)"
            )
        },
        frozenset(),
        "optimizer.apply(gradients): the variables the optimizer was built with",
    ),
    Variant(
        "alt_keras_explicit_last_axis",
        {
            "keras_layers": keras_layers(
                f"return keras.layers.ReLU()(keras.layers.BatchNormalization(axis=1)({DENSE}(prev_layer)))",
                f"return keras.layers.ReLU()(keras.layers.BatchNormalization(axis=3)({CONV}(prev_layer)))",
            )
        },
        frozenset(),
        "the kept axis spelled out: 1 for the dense layer, 3 for the convolution's feature maps",
    ),
    Variant(
        "alt_keras_train_step_keras_loss",
        {
            "keras_training": train_step().replace(
                "training.loss_fn(logits, labels)", "keras.losses.BinaryCrossentropy(from_logits=True)(labels, logits)"
            )
        },
        frozenset(),
        "Keras' BinaryCrossentropy on the logits: the same mean sigmoid cross-entropy",
    ),
    Variant(
        "alt_keras_train_step_jit_compiled",
        {"keras_training": "@tf.function(jit_compile=True)\n" + train_step().lstrip()},
        frozenset(),
        "train_step compiled with XLA (tf.function(jit_compile=True))",
    ),
    Variant(
        "alt_answers_spelled_loosely",
        {
            "q_single_images_answer": 'ANSWER_SINGLE_IMAGES = " " + questions.find_option("single_images", "about the '
            'same").upper() + " "',
            "q_statistics_answer": 'ANSWER_STATISTICS = float(my_layer["shape"][0] * my_layer["shape"][1] ** 2)',
            "q_plain_network_answer": 'ANSWER_PLAIN_NETWORK = questions.find_option("plain_network", "Shrinks").upper()',
            "q_diagnose_memory_answer": 'row = classmate["trace"][-1]\n'
            'ANSWER_DIAGNOSE_MEMORY = (row["after"] - row["before"]) / (row["batch"] - row["before"])',
        },
        frozenset(),
        "the right options in capitals with spaces, the count as a float, the share of one row unrounded",
    ),
    Variant(
        "alt_diagnose_momentum_at_the_bound",
        {
            "diagnose_fix": fix(
                "    layer = keras.layers.Dense(num_units, use_bias=False)(prev_layer)\n"
                "    layer = keras.layers.BatchNormalization(momentum=0.5, epsilon=1e-5)(layer)\n"
                "    return keras.layers.Activation('relu')(layer)\n"
            )
        },
        frozenset(),
        "momentum exactly 0.5, the smallest decay the course accepts (with its own epsilon)",
    ),
    Variant(
        "alt_diagnose_bn_before_relu",
        {
            "diagnose_fix": fix(
                "    layer = keras.layers.Dense(num_units, use_bias=False)(prev_layer)\n"
                "    return keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.9)(layer))\n"
            )
        },
        frozenset(),
        "the diagnosed layer rewritten with batch normalization before the ReLU",
    ),
    Variant(
        "alt_keras_explicit_initializers_momentum_0_999",
        {
            "keras_layers": keras_bn(
                norm='keras.layers.BatchNormalization(momentum=0.999, gamma_initializer="ones", '
                'beta_initializer="zeros")'
            )
        },
        frozenset(),
        "gamma and beta initializers spelled out (ones, zeros); momentum 0.999, still moving within the run",
    ),
    Variant(
        "alt_keras_one_relu_layer_object",
        {"keras_layers": SHARED_RELU},
        frozenset(),
        "one ReLU layer object reused by every call: it has no weights, so no model shares another's",
    ),
    Variant(
        "alt_diagnose_momentum_0_999",
        {
            "diagnose_fix": fix(
                '    layer = keras.layers.Dense(num_units, activation="relu")(prev_layer)\n'
                "    return keras.layers.BatchNormalization(momentum=0.999)(layer)\n"
            )
        },
        frozenset(),
        "the diagnosed layer with momentum 0.999: slow, but the statistics still move within the run",
    ),
]
