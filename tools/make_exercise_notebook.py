"""Writes source/batch_norm_exercises/Batch_Normalization_Exercises.ipynb (the master notebook)."""
from pathlib import Path

from nbcells import answer, code, md, notebook, test

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "source" / "batch_norm_exercises" / "Batch_Normalization_Exercises.ipynb"

cells = [
md("""
# Batch normalization in a 20-layer CNN

In this exercise you add batch normalization to a network that, without it, does not learn at all:
a 20-layer convolutional network on MNIST. You will do it twice:

* **Part 1** with the high-level Keras layers (`tf.keras.layers.BatchNormalization`, the successor of TF1's `tf.layers`);
* **Part 2** with low-level TensorFlow ops: your own `gamma`, `beta`, population mean and variance,
  `tf.nn.moments` and `tf.nn.batch_normalization`.

Both times the network is trained for 800 batches of 64 images with Adam (learning rate 0.002).
Without batch normalization it stays near 10% accuracy (guessing); with it, it should pass 90%.

**How you are graded.** The cells marked *Check* test your functions numerically on small synthetic
inputs: the population statistics after a few training steps, the output in training and in inference
mode, and whether the statistics are per unit or per feature map. Run them yourself: a failing check
says what is wrong. Hidden checks run the same tests on other inputs when the notebook is graded.
The accuracy of the long training runs is *not* graded: when nbgrader grades the notebook (or when
`BNLAB_SHORT=1` is set) every training run is shortened to 40 batches so that grading takes about a minute.

Do not rename the functions or change their signatures, and don't delete cells.
""", "intro"),
code("""
import bnlab                      # imports TensorFlow quietly
from bnlab import grading, nn, training
from bnlab.data import load_mnist

tf = bnlab.tf
keras = tf.keras

bnlab.device.print_device()
mnist = load_mnist()
print(f"MNIST: {len(mnist.train)} training, {len(mnist.validation)} validation, {len(mnist.test)} test images")
if bnlab.short_mode():
    print("Short mode: every training run below stops after", training.short_num_batches(), "batches.")
""", "setup"),
md("""
## Part 1: batch normalization with `tf.keras.layers`

### The network without batch normalization

`conv_layer` and `fully_connected` take the previous layer (a symbolic Keras tensor) and apply Keras
layers to it. `build_network` stacks 19 convolutional layers (3x3 kernels, `layer_depth * 4` feature
maps, stride 2 on every third layer, no pooling), a fully connected layer of 100 units and 10 output
logits. Read this code; you will change these functions below.
""", "part1_intro"),
code('''
def fully_connected(prev_layer, num_units):
    """A fully connected layer of `num_units` units with ReLU, applied to `prev_layer`."""
    return keras.layers.Dense(num_units, activation="relu")(prev_layer)


def conv_layer(prev_layer, layer_depth):
    """A 3x3 convolution with ReLU: `layer_depth * 4` feature maps, stride 2 on every third layer."""
    strides = 2 if layer_depth % 3 == 0 else 1
    return keras.layers.Conv2D(layer_depth * 4, 3, strides=strides, padding="same",
                               activation="relu")(prev_layer)
''', "keras_baseline_layers"),
code('''
def build_network():
    """The 20-layer CNN, built from whatever `conv_layer` and `fully_connected` are defined now."""
    images = keras.Input(shape=(28, 28, 1))
    layer = images
    for layer_depth in range(1, 20):
        layer = conv_layer(layer, layer_depth)
    layer = keras.layers.Flatten()(layer)
    layer = fully_connected(layer, 100)
    logits = keras.layers.Dense(10)(layer)
    return keras.Model(images, logits)


def train_step(model, optimizer, images, labels):
    """One Adam step on a batch; returns the batch loss and the logits."""
    with tf.GradientTape() as tape:
        logits = model(images)
        loss = training.loss_fn(logits, labels)
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    return loss, logits


def predict(model, images):
    """The logits used to evaluate the network."""
    return model(images)
''', "keras_baseline_training"),
md("""
`training.train` runs the loop: 800 batches, the training loss and accuracy every 25 batches and the
validation figures every 100, shown live in a panel. At the end it prints the validation and test
accuracy and the accuracy on the first 100 test images *scored one at a time*, as batches of one.
This takes a minute or two on a laptop.
""", "baseline_run_intro"),
code("""
baseline = training.train(build_network(), train_step, predict, data=mnist,
                          name="Keras layers, no batch normalization")
""", "keras_baseline_run"),
md("""
The accuracy stays around 10%: the network predicts roughly the same digit for every image. Twenty
layers of ReLUs with default initial weights make the signal in the deep layers shrink or explode,
and the gradients that reach the first layers are useless. Batch normalization keeps every layer's
inputs at zero mean and unit variance (then lets the network learn a better scale `gamma` and shift
`beta`), and that is enough to make this network train.

### Your task, Part 1

1. Rewrite `fully_connected` and `conv_layer` so that each applies batch normalization:
   * create the `Dense` / `Conv2D` layer **without a bias** (`use_bias=False`; the `beta` of batch
     normalization does its job) and **without an activation**;
   * apply `keras.layers.BatchNormalization()` to the linear output;
   * then apply the ReLU (`keras.layers.ReLU()` or `keras.layers.Activation("relu")`).
2. Batch normalization behaves differently when training (it normalizes with the statistics of the
   batch and updates the population statistics) and at inference (it uses the population statistics).
   In TF1 you fed an `is_training` flag and ran the layer's update ops; in TF2 a Keras model takes a
   `training` argument: `model(images, training=True)`. Change `train_step` and `predict` so that
   training updates the population statistics and evaluation uses them.
""", "part1_task"),
answer('''
def fully_connected(prev_layer, num_units):
    """A fully connected layer of `num_units` units, batch normalization, then ReLU."""
    # Dense without bias or activation -> BatchNormalization -> ReLU
    ### BEGIN SOLUTION
    layer = keras.layers.Dense(num_units, use_bias=False)(prev_layer)
    layer = keras.layers.BatchNormalization()(layer)
    return keras.layers.ReLU()(layer)
    ### END SOLUTION


def conv_layer(prev_layer, layer_depth):
    """A 3x3 convolution (`layer_depth * 4` feature maps, stride 2 on every third layer),
    batch normalization, then ReLU."""
    strides = 2 if layer_depth % 3 == 0 else 1
    # Conv2D without bias or activation -> BatchNormalization -> ReLU
    ### BEGIN SOLUTION
    layer = keras.layers.Conv2D(layer_depth * 4, 3, strides=strides, padding="same",
                                use_bias=False)(prev_layer)
    layer = keras.layers.BatchNormalization()(layer)
    return keras.layers.ReLU()(layer)
    ### END SOLUTION
''', "keras_layers"),
answer('''
def train_step(model, optimizer, images, labels):
    """One Adam step on a batch; returns the batch loss and the logits."""
    with tf.GradientTape() as tape:
        # the logits, computed so that batch normalization trains (and updates its statistics)
        ### BEGIN SOLUTION
        logits = model(images, training=True)
        ### END SOLUTION
        loss = training.loss_fn(logits, labels)
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    return loss, logits


def predict(model, images):
    """The logits used to evaluate the network (inference: population statistics)."""
    ### BEGIN SOLUTION
    return model(images, training=False)
    ### END SOLUTION
''', "keras_training"),
md("""
### Check your Part 1 functions

Each check builds a tiny model with your function and compares it with a NumPy reference.
""", "part1_checks"),
test("""
# Check (1 point): fully_connected has a BatchNormalization layer with one statistic per unit
grading.check_structure(fully_connected, "dense", api="keras")
print("fully_connected: structure OK")
""", "test_keras_fc_structure", 1),
test("""
# Check (2 points): training updates the population statistics of fully_connected as a moving average
found = grading.check_population_statistics(fully_connected, "dense", api="keras")
print("fully_connected: population statistics OK, momentum", round(found["momentum"], 3))
### BEGIN HIDDEN TESTS
grading.check_population_statistics(fully_connected, "dense", api="keras", arg=7, steps=6, seed=11)
### END HIDDEN TESTS
""", "test_keras_fc_population", 2),
test("""
# Check (3 points): fully_connected normalizes with batch statistics when training, population statistics at inference
grading.check_training_output(fully_connected, "dense", api="keras")
grading.check_inference_output(fully_connected, "dense", api="keras")
print("fully_connected: training and inference outputs OK")
### BEGIN HIDDEN TESTS
grading.check_training_output(fully_connected, "dense", api="keras", arg=3, seed=5)
grading.check_inference_output(fully_connected, "dense", api="keras", arg=3, seed=5)
### END HIDDEN TESTS
""", "test_keras_fc_outputs", 3),
test("""
# Check (1 point): conv_layer has a BatchNormalization layer with one statistic per feature map
grading.check_structure(conv_layer, "conv", api="keras")
print("conv_layer: structure OK")
### BEGIN HIDDEN TESTS
grading.check_structure(conv_layer, "conv", api="keras", arg=3)
### END HIDDEN TESTS
""", "test_keras_conv_structure", 1),
test("""
# Check (2 points): training updates the per-feature-map population statistics of conv_layer
grading.check_population_statistics(conv_layer, "conv", api="keras")
print("conv_layer: population statistics OK")
### BEGIN HIDDEN TESTS
grading.check_population_statistics(conv_layer, "conv", api="keras", arg=3, steps=5, seed=13)
### END HIDDEN TESTS
""", "test_keras_conv_population", 2),
test("""
# Check (3 points): conv_layer normalizes with batch statistics when training, population statistics at inference
grading.check_training_output(conv_layer, "conv", api="keras")
grading.check_inference_output(conv_layer, "conv", api="keras")
print("conv_layer: training and inference outputs OK")
### BEGIN HIDDEN TESTS
grading.check_training_output(conv_layer, "conv", api="keras", arg=3, seed=7)
grading.check_inference_output(conv_layer, "conv", api="keras", arg=3, seed=7)
### END HIDDEN TESTS
""", "test_keras_conv_outputs", 3),
test("""
# Check (3 points): train_step runs the model in training mode, so the population statistics move
grading.check_train_step(train_step, fully_connected)
print("train_step OK")
### BEGIN HIDDEN TESTS
grading.check_train_step(train_step, fully_connected, seed=21)
### END HIDDEN TESTS
""", "test_keras_train_step", 3),
test("""
# Check (3 points): predict runs the model in inference mode, with the population statistics
grading.check_predict(predict, fully_connected)
print("predict OK")
### BEGIN HIDDEN TESTS
grading.check_predict(predict, fully_connected, seed=17)
### END HIDDEN TESTS
""", "test_keras_predict", 3),
md("""
### Train the network with batch normalization

The same 800 batches as before. The validation accuracy should climb past 90% within a few hundred
batches, and the accuracy on the 100 single images should be as high as the test accuracy: at
inference a batch of one is normalized with the population statistics, not with its own.
""", "part1_run_intro"),
code("""
with_bn = training.train(build_network(), train_step, predict, data=mnist,
                         name="Keras layers with batch normalization")
""", "keras_bn_run"),
md("""
## Part 2: batch normalization with `tf.nn`

Now you write batch normalization yourself. The network has the same shape, but every layer is made
of TensorFlow ops and variables, as in TF1's low-level API.

**Variables that live across calls.** In TF1 a layer function ran once, to build a graph. In TF2
the forward pass runs again for every batch, so a layer function must not create fresh variables
each time. The course library's `nn.get_variable(name, shape, initializer, trainable=True)` returns a
`tf.Variable` that is created on the network's first pass and **reused on every later pass**, so you
can write layer functions exactly as in TF1. The network itself is an `nn.Network` (a `tf.Module`)
that calls the layer functions and keeps their variables:

```python
weights = nn.get_variable("weights", [num_inputs, num_units], keras.initializers.GlorotUniform())
gamma = nn.get_variable("gamma", [num_units], tf.ones)
```

Here is the rest of the Part 2 network, which uses your `fully_connected` and `conv_layer`. Note the
`is_training` flag: `True` in `train_step_nn`, `False` in `predict_nn`.
""", "part2_intro"),
code('''
def build_network_nn(images, is_training):
    """The 20-layer CNN written with tf.nn ops; `is_training` is a Python bool."""
    layer = images
    for layer_depth in range(1, 20):
        layer = conv_layer(layer, layer_depth, is_training)
    layer = tf.reshape(layer, [-1, layer.shape[1] * layer.shape[2] * layer.shape[3]])
    layer = fully_connected(layer, 100, is_training)
    return nn.dense(layer, 10, name="logits")


def train_step_nn(network, optimizer, images, labels):
    """One Adam step: the network runs with is_training=True."""
    with tf.GradientTape() as tape:
        logits = network(images, is_training=True)
        loss = training.loss_fn(logits, labels)
    gradients = tape.gradient(loss, network.trainable_variables)
    optimizer.apply_gradients(zip(gradients, network.trainable_variables))
    return loss, logits


def predict_nn(network, images):
    """Inference: the network runs with is_training=False."""
    return network(images, is_training=False)
''', "nn_network"),
md(r"""
### Your task, Part 2

Write `fully_connected(prev_layer, num_units, is_training)` and `conv_layer(prev_layer, layer_depth,
is_training)`. Each computes its linear output **without a bias**, batch-normalizes it, and applies
`tf.nn.relu`:

1. Weights: `nn.get_variable("weights", ...)` initialized with `keras.initializers.GlorotUniform()` (the Keras default),
   shape `[inputs, num_units]` for the dense layer (use `tf.matmul`) and `[3, 3, in_channels,
   layer_depth * 4]` for the convolution (use `tf.nn.conv2d` with `padding="SAME"` and stride 2 when
   `layer_depth % 3 == 0`, else 1).
2. `gamma` (ones) and `beta` (zeros), trainable; `pop_mean` (zeros) and `pop_variance` (ones), **not**
   trainable. Use exactly these names; one entry per unit, or per feature map for the convolution.
3. When `is_training` is true: `batch_mean, batch_variance = tf.nn.moments(linear, axes)`, over axis
   `[0]` for the dense layer and `[0, 1, 2]` for the convolution (one mean and variance per feature
   map); update the population statistics with `decay = 0.99`
   $$\text{pop} \leftarrow \text{pop}\cdot\text{decay} + \text{batch}\cdot(1-\text{decay})$$
   (`pop_mean.assign(...)`), and normalize with the **batch** statistics.
4. When it is false: normalize with the **population** statistics and leave them unchanged.
5. Normalize with `tf.nn.batch_normalization(x, mean, variance, beta, gamma, epsilon)` and
   `epsilon = 1e-3`, or write $\gamma\,\frac{x-\mu}{\sqrt{\sigma^2+\epsilon}}+\beta$ yourself.

A plain Python `if is_training:` works: the flag is a Python bool, and `tf.function` traces one graph
for each value.
""", "part2_task"),
answer('''
def fully_connected(prev_layer, num_units, is_training):
    """A fully connected layer of `num_units` units with batch normalization (tf.nn ops) and ReLU."""
    ### BEGIN SOLUTION
    weights = nn.get_variable("weights", [prev_layer.shape[-1], num_units],
                              keras.initializers.GlorotUniform())
    linear = tf.matmul(prev_layer, weights)
    normalized = batch_norm(linear, num_units, [0], is_training)
    return tf.nn.relu(normalized)
    ### END SOLUTION


def conv_layer(prev_layer, layer_depth, is_training):
    """A 3x3 convolution (`layer_depth * 4` feature maps, stride 2 on every third layer) with
    batch normalization per feature map (tf.nn ops) and ReLU."""
    strides = 2 if layer_depth % 3 == 0 else 1
    out_channels = layer_depth * 4
    ### BEGIN SOLUTION
    weights = nn.get_variable("weights", [3, 3, prev_layer.shape[-1], out_channels],
                              keras.initializers.GlorotUniform())
    linear = tf.nn.conv2d(prev_layer, weights, strides=strides, padding="SAME")
    normalized = batch_norm(linear, out_channels, [0, 1, 2], is_training)
    return tf.nn.relu(normalized)


def batch_norm(linear, size, axes, is_training, decay=0.99, epsilon=1e-3):
    """Batch normalization of `linear` over `axes`, with `size` statistics (one per unit/feature map)."""
    gamma = nn.get_variable("gamma", [size], tf.ones)
    beta = nn.get_variable("beta", [size], tf.zeros)
    pop_mean = nn.get_variable("pop_mean", [size], tf.zeros, trainable=False)
    pop_variance = nn.get_variable("pop_variance", [size], tf.ones, trainable=False)
    if is_training:
        batch_mean, batch_variance = tf.nn.moments(linear, axes)
        pop_mean.assign(pop_mean * decay + batch_mean * (1 - decay))
        pop_variance.assign(pop_variance * decay + batch_variance * (1 - decay))
        return tf.nn.batch_normalization(linear, batch_mean, batch_variance, beta, gamma, epsilon)
    return tf.nn.batch_normalization(linear, pop_mean, pop_variance, beta, gamma, epsilon)
    ### END SOLUTION
''', "nn_layers"),
md("""
### Check your Part 2 functions
""", "part2_checks"),
test("""
# Check (1 point): fully_connected creates gamma, beta (trainable) and pop_mean, pop_variance (not trainable), one per unit
grading.check_structure(fully_connected, "dense", api="nn")
print("fully_connected: variables OK")
""", "test_nn_fc_variables", 1),
test("""
# Check (2 points): training updates pop_mean and pop_variance of fully_connected as a moving average
found = grading.check_population_statistics(fully_connected, "dense", api="nn")
print("fully_connected: population statistics OK, decay", round(found["momentum"], 3))
### BEGIN HIDDEN TESTS
grading.check_population_statistics(fully_connected, "dense", api="nn", arg=7, steps=6, seed=11)
### END HIDDEN TESTS
""", "test_nn_fc_population", 2),
test("""
# Check (1 point): in training mode fully_connected normalizes with the batch statistics
grading.check_training_output(fully_connected, "dense", api="nn")
print("fully_connected: training output OK")
### BEGIN HIDDEN TESTS
grading.check_training_output(fully_connected, "dense", api="nn", arg=3, seed=5)
### END HIDDEN TESTS
""", "test_nn_fc_training_output", 1),
test("""
# Check (2 points): at inference fully_connected uses the population statistics and leaves them unchanged
grading.check_inference_output(fully_connected, "dense", api="nn")
print("fully_connected: inference output OK")
### BEGIN HIDDEN TESTS
grading.check_inference_output(fully_connected, "dense", api="nn", arg=3, seed=5)
### END HIDDEN TESTS
""", "test_nn_fc_inference_output", 2),
test("""
# Check (1 point): conv_layer creates gamma, beta, pop_mean, pop_variance with one entry per feature map
grading.check_structure(conv_layer, "conv", api="nn")
print("conv_layer: variables OK")
### BEGIN HIDDEN TESTS
grading.check_structure(conv_layer, "conv", api="nn", arg=3)
### END HIDDEN TESTS
""", "test_nn_conv_variables", 1),
test("""
# Check (2 points): training updates the per-feature-map population statistics of conv_layer
grading.check_population_statistics(conv_layer, "conv", api="nn")
print("conv_layer: population statistics OK")
### BEGIN HIDDEN TESTS
grading.check_population_statistics(conv_layer, "conv", api="nn", arg=3, steps=5, seed=13)
### END HIDDEN TESTS
""", "test_nn_conv_population", 2),
test("""
# Check (1 point): in training mode conv_layer normalizes each feature map with the batch statistics
grading.check_training_output(conv_layer, "conv", api="nn")
print("conv_layer: training output OK")
### BEGIN HIDDEN TESTS
grading.check_training_output(conv_layer, "conv", api="nn", arg=3, seed=7)
### END HIDDEN TESTS
""", "test_nn_conv_training_output", 1),
test("""
# Check (2 points): at inference conv_layer uses the population statistics and leaves them unchanged
grading.check_inference_output(conv_layer, "conv", api="nn")
print("conv_layer: inference output OK")
### BEGIN HIDDEN TESTS
grading.check_inference_output(conv_layer, "conv", api="nn", arg=3, seed=7)
### END HIDDEN TESTS
""", "test_nn_conv_inference_output", 2),
md("""
### Train the low-level network
""", "part2_run_intro"),
code("""
with_nn_bn = training.train(nn.Network(build_network_nn), train_step_nn, predict_nn, data=mnist,
                            name="tf.nn with batch normalization")
""", "nn_bn_run"),
md("""
## What you should see

| network | accuracy after 800 batches | 100 single images |
|---|---|---|
| no batch normalization | about 10% | about 10% |
| Part 1, Keras layers | above 95% | about the test accuracy |
| Part 2, tf.nn | above 95% | about the test accuracy |

If the single-image accuracy is far below the test accuracy, inference is still using the batch
statistics: a batch of one normalized with its own mean is all zeros, so every image gets the same
prediction.

**Variations that also work.** The original paper puts batch normalization between the linear output
and the nonlinearity, as you did. Keeping the bias, or normalizing *after* the ReLU (with or without
the bias), train about as well here, and the checks accept them.
""", "summary"),
]

notebook(cells, OUT)
print("wrote", OUT)
