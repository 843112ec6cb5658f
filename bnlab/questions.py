"""The exercise's "predict, then run" questions and its "diagnose this" task.

A student answers a multiple-choice question by setting a variable to a letter (for example
``ANSWER_SINGLE_IMAGES = "b"``). :func:`bnlab.grading.check_choice` checks it: the visible check only
that it is one of the options, the hidden one (whose expected letter is in the hidden test region, so
the released notebook never states it) that it is right. For a wrong letter the message comes from
:func:`teach` here: it explains what the choice overlooks, without naming the right option. The
messages themselves are grader side only: ``make bundle`` leaves their block (``TEACH``) out of the
student's copy of this module, since the letter of each question without a message is the answer.

:func:`show_single_images` and :func:`show_symptom` show what really happens, after the student has
committed to an answer. They run on the notebook's kernel and are not graded.
"""
from __future__ import annotations

import contextlib

import numpy as np

__all__ = ["TEACH", "teach", "show_single_images", "buggy_fully_connected", "describe_layers", "show_symptom"]


# BEGIN GRADER SIDE (bnlab.bundle leaves these lines out of the student bundle)
SECTION_BATCH_OF_ONE = "lesson, section 2, 'Why a batch of one needs population statistics'"
SECTION_CONV = "lesson, section 6, 'ConvNets: one mean and variance per feature map'"

# question -> {wrong letter: what that choice overlooks}; the right letter has no entry
TEACH = {
    "single_images": {
        "a": "One image on its own is not 'normalized just as well'. Look at the dense layer near the end: "
             "what are the mean and the variance of a batch that holds a single value, and what is left of "
             f"that value after normalization? ({SECTION_BATCH_OF_ONE})",
        "b": "The statistics of one image are not merely noisier than those of 64: for the dense layer they "
             "are degenerate. What is the variance of a single value, and what does the normalized output "
             f"become? ({SECTION_BATCH_OF_ONE})",
        "c": "The damage is larger than that. For the dense layer a batch of one has variance exactly zero, "
             "so its output no longer depends on the image at all. How often is a network right when it "
             f"gives every image the same answer? ({SECTION_BATCH_OF_ONE})",
    },
    "statistics": {
        "b": "pop_mean does not depend on the batch size: it is kept across batches of any size (even one "
             "image at inference). It holds a statistic per feature, not per example.",
        "c": "One value per position treats every pixel position as a feature of its own. A convolution "
             "applies the same filter at every position, so all positions of one feature map are values of "
             f"the same feature. ({SECTION_CONV})",
        "d": "Counting every position of every feature map as its own feature is what a dense layer would do "
             "on the flattened tensor. A convolution applies the same filter at every position: how many "
             f"different features does this layer compute? ({SECTION_CONV})",
    },
}
# END GRADER SIDE
TEACH = globals().get("TEACH", {})  # {} in the student bundle, whose copy lacks the block above


def teach(question: str, answer) -> str:
    """What a wrong ``answer`` to ``question`` overlooks (never the right option); a generic line where
    there is no message (always in the student bundle: the messages reach students with the feedback)."""
    letter = str(answer).strip().lower()
    hint = TEACH.get(question, {}).get(letter)
    if hint is None:
        return f"{answer!r} is not the expected answer. Reread the question and the lesson section it points to."
    return f"{letter!r} is not the expected answer. {hint}"


# --------------------------------------------------------------------------------------------
# "predict, then run": a batch of one normalized with its own statistics

def _one_at_a_time(model, images, training: bool) -> np.ndarray:
    """Predicted classes, each image scored alone; the model's non-trainable state is restored."""
    import bnlab

    saved = [v.numpy() for v in model.non_trainable_variables]
    call = bnlab.tf.function(lambda x: model(x, training=training))  # one trace: a traced call is fast
    try:
        return np.array([int(np.argmax(np.asarray(call(image[np.newaxis]))[0])) for image in images])
    finally:
        for variable, value in zip(model.non_trainable_variables, saved):
            variable.assign(value)


def show_single_images(model, data, count: int = 100) -> dict:
    """Score the first ``count`` test images one at a time, with population and with batch statistics.

    Prints both accuracies and how many different digits each mode predicts; returns them as a dict
    (empty under nbgrader, where nothing of it is graded and it is skipped).
    """
    from bnlab import settings

    if settings.grading():  # nothing here is graded (the question is), and two traces cost a second
        print("(Single images are not scored under nbgrader: run the notebook yourself to see them.)")
        return {}
    images, labels = data.test.images[:count], np.asarray(data.test.labels[:count])
    found = {}
    for mode, training in (("population statistics (inference mode)", False),
                           ("each image's own batch statistics", True)):
        predicted = _one_at_a_time(model, images, training)
        digits, counts = np.unique(predicted, return_counts=True)
        accuracy = float(np.mean(predicted == labels))
        found[mode] = {"accuracy": accuracy, "digits": len(digits)}
        common = digits[np.argmax(counts)]
        print(f"{count} test images scored one at a time, with {mode}:\n"
              f"    accuracy {accuracy:.2f}; {len(digits)} distinct digit{'s' if len(digits) > 1 else ''} "
              f"predicted, the most common ({common}) for {counts.max()} of the {count} images")
    return found


# --------------------------------------------------------------------------------------------
# "diagnose this": what a layer's population statistics do from one training batch to the next

_DEMO = {"depth": 0}   # > 0 while show_symptom builds the layers it compares


@contextlib.contextmanager
def _classmate_demo():
    _DEMO["depth"] += 1
    try:
        yield
    finally:
        _DEMO["depth"] -= 1


def buggy_fully_connected(prev_layer, num_units):
    """The classmate's dense layer of Part 3: it trains, but its population statistics are broken.

    The notebook shows what it does (:func:`show_symptom`) and how its layers are set up, not its code.
    It builds only inside :func:`show_symptom`: anywhere else (as a layer of the student's network, or
    under a check) it raises, so that it does not double as an answer to Part 1, whose structure and
    output checks its correct parts would pass."""
    import bnlab

    if not _DEMO["depth"]:
        raise RuntimeError("buggy_fully_connected is the classmate's layer of Part 3: it is for "
                           "questions.show_symptom only, not a layer for your network. Write your own layer.")
    keras = bnlab.tf.keras
    layer = keras.layers.Dense(num_units, activation="relu")(prev_layer)
    return keras.layers.BatchNormalization(momentum=0.1)(layer)


_SETTINGS = {"Dense": ("units", "activation", "use_bias"), "Conv2D": ("filters", "activation", "use_bias"),
             "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
             "ReLU": (), "Activation": ("activation",)}


def describe_layers(model) -> str:
    """The model's layers in order, each with the settings that matter for batch normalization."""
    parts = []
    for layer in model.layers:
        name = type(layer).__name__
        if name == "InputLayer":
            continue
        config = layer.get_config()
        settings = ", ".join(f"{key}={config[key]!r}" for key in _SETTINGS.get(name, ()) if key in config)
        if not layer.trainable:
            settings += (", " if settings else "") + "trainable=False"
        parts.append(f"{name}({settings})")
    return " -> ".join(parts)


def _features(rng, batch, offset, scale):
    return (offset + scale * rng.standard_normal((batch, len(offset)))).astype(np.float32)


REFERENCE = "a correct layer, for comparison"


def show_symptom(layer_fn, num_units: int = 4, warmup: int = 300, steps: int = 6, seed: int = 0,
                 skip_when_grading: bool = False) -> dict:
    """Train a one-layer Keras model built with ``layer_fn(prev_layer, num_units)`` for ``warmup``
    batches, then show how much its inference-mode output on a fixed set of examples moves after each
    further training batch, next to a correct layer; print the layers ``layer_fn`` builds.

    Only the forward passes run (no optimizer), so the weights stay put and any change comes from the
    population statistics. Returns ``{name: mean absolute change per batch}``. ``skip_when_grading``
    marks a demo of given code only (the classmate's layer): under nbgrader it grades nothing, so it
    prints a note instead and returns ``{}``.
    """
    import bnlab
    from bnlab import settings

    if settings.skip_given_code("The symptom demo", skip_when_grading):
        return {}

    tf = bnlab.tf
    keras = tf.keras

    def reference(prev_layer, units):
        linear = keras.layers.Dense(units, use_bias=False)(prev_layer)
        return keras.layers.ReLU()(keras.layers.BatchNormalization()(linear))

    rng = np.random.default_rng(seed)
    offset, scale = rng.uniform(-2.0, 3.0, size=6), rng.uniform(0.5, 3.0, size=6)
    probe = _features(rng, 64, offset, scale)
    batches = [_features(rng, 64, offset, scale) for _ in range(warmup + steps)]
    changes, layers, same = {}, {}, {}
    for name, fn in ((getattr(layer_fn, "__name__", "your layer"), layer_fn),
                     (REFERENCE, reference)):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input(shape=(len(offset),))
        with _classmate_demo():
            model = keras.Model(inputs, fn(inputs, num_units))
        if fn is layer_fn:
            layers[name] = describe_layers(model)
        train = tf.function(lambda x, model=model: model(x, training=True))
        infer = tf.function(lambda x, model=model: model(x, training=False))
        for batch in batches[:warmup]:
            train(batch)
        before = np.asarray(infer(probe))
        moves = []
        for batch in batches[warmup:]:
            train(batch)
            after = np.asarray(infer(probe))
            moves.append(float(np.mean(np.abs(after - before))))
            before = after
        changes[name] = moves
        # a layer whose training-mode output is its inference-mode output never normalizes with a batch's own
        # statistics while it trains (a frozen BatchNormalization does that): a still output then proves nothing
        same[name] = bool(np.allclose(np.asarray(model(batches[-1], training=True)),
                                      np.asarray(model(batches[-1], training=False)), atol=1e-6))
    for name, description in layers.items():
        print(f"Layers of {name}: {description}\n")
    print(f"Inference-mode output on the same {len(probe)} examples: mean absolute change after each of "
          f"{steps} more training batches\n(after {warmup} training batches; weights fixed, so only the "
          "population statistics can move it)")
    width = max(len(name) for name in changes)
    for name, moves in changes.items():
        print(f"  {name:<{width}}  " + "  ".join(f"{m:.4f}" for m in moves))
    for name, identical in same.items():
        if identical:
            print(f"Note: {name} gives the same output in training mode as in inference mode, so it does not "
                  "normalize with each batch's statistics while it trains: a small change above does not mean "
                  "it works (lesson, section 2).")
    return {name: float(np.mean(moves)) for name, moves in changes.items()}
