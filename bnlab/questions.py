"""The exercise's "predict, then run" questions and its "diagnose this" task, drawn per student.

Each student gets their own variant of every question (:mod:`bnlab.variants` draws it from their id): the
multiple-choice questions show their options in an order drawn for the student (:func:`show_options`), the
statistics question a layer shape drawn among the network's (:func:`show_statistics_case`), and Part 3 one of
a few classmates' recordings (:func:`classmate`). This module knows the student's order and case, never which
answer is right. For a wrong answer, :func:`teach` explains what the choice overlooks and which lesson section
to reread, without naming the right option.

:func:`show_single_images`, :func:`show_averaged_count` and the cells after the questions show what really
happens. Part 3 works from what a classmate recorded of their layer: :func:`show_classmate_symptom` and
:func:`show_classmate_trace` print it, and :func:`trace_statistics` measures the student's own fix the same way.
"""

from __future__ import annotations

import numpy as np

from bnlab import variants
from bnlab.exercise import MAX_MOMENTUM, MIN_MOMENTUM, MOMENTUM_TOLERANCE, NUM_BATCHES, conv_output_shape

__all__ = [
    "OPTIONS",
    "TEACH",
    "teach",
    "choices",
    "show_options",
    "find_option",
    "statistics_case",
    "show_statistics_case",
    "show_single_images",
    "show_averaged_count",
    "CLASSMATES",
    "classmate",
    "show_classmate_symptom",
    "show_classmate_trace",
    "output_moves",
    "trace_statistics",
]

LETTERS = "abcd"
# The options of each multiple-choice question, by a key that says what the option claims (not whether it
# holds). The notebook shows them in the order drawn for the student; the grader names the right key.
OPTIONS = {
    "plain_network": {
        "diverges": "The learning rate of 0.002 is too high for 20 layers: the weights grow from step to step and "
        "the loss diverges.",
        "shrinks": "At the initial weights the spread of the pre-activations shrinks by orders of magnitude from "
        "layer to layer, so the last layers see almost the same input for every image, and the first layers get "
        "gradients so small that Adam's steps for them are tiny.",
        "dead_relus": "Almost every ReLU is dead from the first batch on: in every layer the share of positive "
        "pre-activations is close to zero, so no gradient flows.",
        "overfits": "The network overfits: it learns its training batches well, but what it learns does not carry "
        "over to the validation images.",
    },
    "single_images": {
        "same": "about the same as with the population statistics (within a few points)",
        "lower": "clearly lower: between 50% and 90%",
        "much_lower": "between 16% and 50%",
        "chance": "15% or lower",
    },
    "upstream_shift": {
        "all_three": "All three: every entry of dx shifts by c * gamma / sqrt(var + eps), and dgamma and dbeta grow.",
        "dbeta_only": "Only dbeta (by c times the count); dx and dgamma stay exactly as they were.",
        "parameters": "dbeta and dgamma change; dx stays as it was.",
        "dx_only": "dx changes; dgamma and dbeta do not.",
    },
}


# BEGIN GRADER SIDE (bnlab.instructor.bundle leaves these lines out of the student bundle)
SECTION_BATCH_OF_ONE = "lesson, section 2, 'Why a batch of one needs population statistics'"
SECTION_MOVING = "lesson, section 2, 'Population statistics as a moving average'"
SECTION_CONV = "lesson, section 6, 'ConvNets: one mean and variance per feature map'"
SECTION_BACKWARD = "lesson, section 12, 'The backward pass by hand'"
SECTION_PLAIN = (
    '''lesson, section 8, "Inside the exercise's network: why it does not learn without batch normalization"'''
)

# question -> {key of a wrong answer: what that answer overlooks}; the right key has no entry. The keys are those
# of OPTIONS (multiple choice) or of the candidate values a numeric answer is compared with. No message names a
# letter or a number of a student's variant, so each is true whatever order or case was drawn.
TEACH = {
    "plain_network": {
        "diverges": "Look at the plain network's loss in the run above: it does not grow, it levels off (at the "
        "chance level the text computes). Diverging weights would look different. What do the per-layer views "
        f"show about the signal that reaches the last layers? ({SECTION_PLAIN})",
        "dead_relus": "The views show the share of positive pre-activations layer by layer: is it near zero? Many "
        "ReLUs still pass a signal. Look instead at how large that signal is, layer after layer, and at the "
        f"gradients of the first layers. ({SECTION_PLAIN})",
        "overfits": "Overfitting needs a training accuracy far above the validation accuracy. Compare the two in "
        f"the run above: does the network learn its training batches? ({SECTION_PLAIN})",
    },
    "single_images": {
        "lower": "A batch of 100 different test images is not a batch of one. Compare its mean and variance per "
        "unit with the population statistics, which average training batches of 64: how far apart can "
        f"they be? ({SECTION_BATCH_OF_ONE})",
        "much_lower": "The collapse of section 2 needs a batch whose variance is zero, one value per unit. What "
        "are the mean and the variance of 100 different digits, compared with those of the training batches? "
        f"({SECTION_BATCH_OF_ONE})",
        "chance": "Batch statistics at inference are not wrong in themselves: a batch of one is, because its "
        "variance is zero. Would 100 different test images have the same problem? Compare their statistics with "
        f"the population statistics. ({SECTION_BATCH_OF_ONE})",
    },
    "statistics": {
        "batch": "That is one value per image: averaging over the batch axis only, as for a dense layer. A "
        "feature map has a value at every position too, and a convolution applies one filter at all of "
        f"them. ({SECTION_CONV})",
        "positions": "That averages over the positions of one image only. The batch statistics are statistics of "
        f"the batch: which images do they take values from? ({SECTION_CONV})",
        "tensor": "That is every number of the tensor: one mean for the whole layer. How many means does the "
        f"layer keep, and what does each one average? ({SECTION_CONV})",
    },
    "diagnose_memory": {
        "old_share": "That is the share of its old value the population mean keeps, not the share of the new "
        f"batch: compute (after - before) / (batch mean - before) on a printed row. ({SECTION_MOVING})",
        "other": "Check it on every row of the printout: (after - before) / (batch mean - before). Does every "
        f"row give about the same share, and is it the number you entered? ({SECTION_MOVING})",
    },
    "upstream_shift": {
        "all_three": "Write the extra loss term out: c * sum(out) = c * gamma * sum(x_hat) + c * count * beta. "
        f"What is sum(x_hat) over the batch, for any batch? Does the term depend on x at all? ({SECTION_BACKWARD})",
        "parameters": "dgamma is the sum of dout * x_hat: what does the extra c contribute to it, given what x_hat "
        f"sums to over the batch? ({SECTION_BACKWARD})",
        "dx_only": "The extra term c * sum(out) equals c * gamma * sum(x_hat) + c * count * beta, and x_hat sums to "
        f"zero over the batch whatever x is: which variable does it still depend on? ({SECTION_BACKWARD})",
    },
}
# END GRADER SIDE
TEACH = globals().get("TEACH", {})  # {} where the messages above are not installed


def choices(question: str, student: str | None = None) -> dict[str, str]:
    """``{letter: option key}`` of a multiple-choice question, in the order drawn for the student."""
    return dict(zip(LETTERS, variants.order(question, OPTIONS[question], student)))


def show_options(question: str) -> dict[str, str]:
    """Print the options of ``question`` as this notebook's student sees them; return ``{letter: text}``."""
    shown = {letter: OPTIONS[question][key] for letter, key in choices(question).items()}
    for letter, text in shown.items():
        print(f"({letter}) {text}")
    return shown


def find_option(question: str, words: str) -> str:
    """The letter of the one option of ``question`` whose text contains ``words`` (in this notebook's order)."""
    found = [letter for letter, key in choices(question).items() if words.lower() in OPTIONS[question][key].lower()]
    if len(found) != 1:
        raise ValueError(f"{len(found)} options of {question!r} contain {words!r}: give words of exactly one.")
    return found[0]


def teach(question: str, answer, key: str | None = None) -> str:
    """What a wrong ``answer`` to ``question`` overlooks (never the right option); a generic line where
    there is no message for it. ``key`` names what the answer claims (an option's key, or which candidate a
    number matched); for a multiple-choice letter it is found from the student's order of the options."""
    letter = str(answer).strip().lower()
    if key is None and question in OPTIONS and letter in LETTERS:
        key = choices(question)[letter]
    hint = TEACH.get(question, {}).get(key)
    if hint is None:
        return f"{answer!r} is not the expected answer. Reread the question and the lesson section it points to."
    return f"{letter!r} is not the expected answer. {hint}"


# --------------------------------------------------------------------------------------------
# "how much does one statistic average?": a conv layer of the exercise's network, drawn per student

# batch sizes the network can be called with, and the depths whose linear output is 28x28, 14x14, 4x4 or 2x2. The
# 7x7 layers are left out (the cell after the question measures one of them: 64 * 7 * 7 numbers), and so is a batch
# of 16, whose 14x14 layers average that many numbers too.
STATISTICS_BATCHES = (32, 48, 64, 96, 100, 128, 200, 256)
STATISTICS_DEPTHS = (1, 2, 3, 4, 5, 9, 10, 11, 12, 13, 14)


def statistics_case(student: str | None = None) -> dict:
    """The statistics question's case for the student: ``{"layer_depth", "shape"}``."""
    depth = STATISTICS_DEPTHS[variants.draw("statistics_depth", len(STATISTICS_DEPTHS), student)]
    batch = STATISTICS_BATCHES[variants.draw("statistics_batch", len(STATISTICS_BATCHES), student)]
    return {"layer_depth": depth, "shape": conv_output_shape(depth, batch)}


# BEGIN GRADER SIDE (the values a numeric answer is compared with: left out of the student bundle)
def candidates(question: str, student: str | None = None) -> dict:
    """The values a numeric answer to the statistics question may name in the student's case, by what each would
    average: one value per image, the positions of one image, the batch at every position, the whole tensor ({} for
    another question)."""
    if question != "statistics":
        return {}
    batch, height, width, maps = statistics_case(student)["shape"]
    return {"batch": batch, "positions": height * width, "batch_and_positions": batch * height * width,
            "tensor": batch * height * width * maps}  # fmt: skip


# END GRADER SIDE
def show_statistics_case() -> dict:
    """Print the statistics question's case as this notebook's student sees it; return it."""
    case = statistics_case()
    batch, height, width, maps = case["shape"]
    print(
        f"For a batch of {batch} images, conv_layer with layer_depth={case['layer_depth']} computes a linear output "
        f"of shape {case['shape']}: {batch} examples, {height}x{width} positions, {maps} feature maps."
    )
    return case


# --------------------------------------------------------------------------------------------
# "predict, then run": a batch of one normalized with its own statistics


def _one_at_a_time(model, images, training: bool) -> np.ndarray:
    """Predicted classes, each image scored alone (one trace); the model's non-trainable state is restored."""
    from bnlab.training.step import predict_one_at_a_time

    return predict_one_at_a_time(lambda x: model(x, training=training), images, compile=True, model=model)


def show_single_images(model, data, count: int = 100, small_batch: int = 4) -> dict:
    """Score the first ``count`` test images one at a time (population statistics, then each image's own
    batch statistics) and in batches of ``small_batch``, each batch normalized with its own statistics.

    Prints each accuracy and how many different digits each way predicts; returns them as a dict
    (empty while the notebook is being graded, when it is skipped). The model's population statistics
    are left as they were.
    """
    from bnlab import settings

    if settings.grading():  # nothing here is graded (the question is): skip its two traces
        print("(Single images are not scored while the notebook is graded: run the notebook yourself to see them.)")
        return {}
    images, labels = data.test.images[:count], np.asarray(data.test.labels[:count])
    ways = {
        "population statistics (inference mode)": lambda: _one_at_a_time(model, images, False),
        "each image's own batch statistics": lambda: _one_at_a_time(model, images, True),
        f"batches of {small_batch}, each normalized with its own statistics": lambda: _in_batches(
            model, images, small_batch
        ),
    }
    found = {}
    for way, predict in ways.items():
        predicted = predict()
        digits, counts = np.unique(predicted, return_counts=True)
        accuracy = float(np.mean(predicted == labels))
        found[way] = {"accuracy": accuracy, "digits": len(digits)}
        common = digits[np.argmax(counts)]
        scored = f"in batches of {small_batch}" if way.startswith("batches") else "one at a time"
        print(
            f"{count} test images scored {scored}, with {way}:\n"
            f"    accuracy {accuracy:.2f}; {len(digits)} distinct digit{'s' if len(digits) > 1 else ''} "
            f"predicted, the most common ({common}) for {counts.max()} of the {count} images"
        )
    return found


def _in_batches(model, images, size: int) -> np.ndarray:
    """Predicted classes of ``images`` in consecutive batches of ``size``, each in training mode; the
    non-trainable state (the population statistics) is restored."""
    from bnlab.training.step import statistics_kept

    with statistics_kept(model):
        batches = [images[i : i + size] for i in range(0, len(images), size)]
        return np.concatenate([np.argmax(np.asarray(model(batch, training=True)), axis=1) for batch in batches])


def show_averaged_count(shape=(64, 7, 7, 32), seed: int = 0) -> int:
    """Measure how many numbers of a convolution's output of ``shape`` one entry of its batch mean averages:
    change one number by 1.0 and see how far Keras' BatchNormalization moves that feature map's batch mean
    (a layer with momentum 0 keeps the last batch's mean). Prints and returns the count."""
    import bnlab

    keras = bnlab.tf.keras
    x = np.random.default_rng(seed).standard_normal(shape)  # float64: 1/N stays exact to the last digit
    means = []
    for bump in (0.0, 1.0):
        y = x.copy()
        y[(0,) * (len(shape) - 1) + (0,)] += bump  # the first number of feature map 0
        layer = keras.layers.BatchNormalization(momentum=0.0, dtype="float64")
        layer(y, training=True)
        means.append(layer.moving_mean.numpy())
    moved = means[1] - means[0]
    count = int(round(1.0 / moved[0]))
    others = int(np.sum(np.abs(moved[1:]) > 1e-12))
    print(
        f"One number of feature map 0 changed by 1.0: its batch mean moved by {moved[0]:.4g} = 1/{count:,}; "
        f"{others or 'none'} of the other {len(moved) - 1} feature maps' batch means moved.\n"
        f"So each entry of the batch mean averages {count:,} numbers of the {int(np.prod(shape)):,} in the tensor."
    )
    return count


# --------------------------------------------------------------------------------------------
# "diagnose this": what a layer's population statistics do from one training batch to the next

# What a classmate's dense layer did, recorded on the demo data below (seed 0): after WARMUP training batches
# (forward passes only, so the weights stay fixed), how much its inference-mode output on the same 64 examples
# moved after each further training batch, next to a layer that works; then one unit's population mean around
# four more training batches. Each student is shown one of these classmates (:func:`classmate`): their layers
# have the same bug, each with its own setting of the argument at fault, and a share of each new batch between
# three quarters and nine tenths. Only the numbers are here: the layers themselves are not part of the course.
# tests/course/test_questions.py records them again from layers built that way and compares.
WARMUP = 300
WORKING = [0.000612, 0.00057, 0.000481, 0.000343, 0.000461, 0.000613]


def _recording(moves, unit, trace) -> dict:
    rows = [dict(zip(("before", "batch", "after"), row)) for row in trace]
    return {"symptom": {"the classmate's layer": moves, "a layer that works": WORKING}, "unit": unit, "trace": rows}


# each: how far the output moved after each of 6 batches; the unit followed; (before, batch, after) per batch
# fmt: off
CLASSMATES = [
    _recording([0.154104, 0.119634, 0.123376, 0.092343, 0.079225, 0.079018], 1,
               [(2.998136, 2.575526, 2.617788), (2.617788, 2.845453, 2.822686),
                (2.822686, 2.361213, 2.407361), (2.407361, 2.844424, 2.800718)]),
    _recording([0.139997, 0.107858, 0.113564, 0.084304, 0.073225, 0.07241], 1,
               [(2.992077, 2.575526, 2.638009), (2.638009, 2.845453, 2.814336),
                (2.814336, 2.361213, 2.429182), (2.429182, 2.844424, 2.782138)]),
    _recording([0.126725, 0.096709, 0.1056, 0.076617, 0.067711, 0.066092], 1,
               [(2.984324, 2.575526, 2.657286), (2.657286, 2.845453, 2.807819),
                (2.807819, 2.361213, 2.450535), (2.450535, 2.844424, 2.765646)]),
    _recording([0.114251, 0.086061, 0.097984, 0.069059, 0.062841, 0.060341], 1,
               [(2.974855, 2.575526, 2.675359), (2.675359, 2.845453, 2.802929),
                (2.802929, 2.361213, 2.471642), (2.471642, 2.844424, 2.751229)]),
]
# fmt: on


def classmate(student: str | None = None) -> dict:
    """The recording of the classmate drawn for the student."""
    return CLASSMATES[variants.draw("diagnose_memory", len(CLASSMATES), student)]


CLASSMATE_NAME = "the classmate's layer"


def _features(rng, batch, offset, scale):
    return (offset + scale * rng.standard_normal((batch, len(offset)))).astype(np.float32)


def _demo_data(seed: int, count: int):
    """``(probe, batches)``: a fixed set of 64 examples and ``count`` training batches of 6 features."""
    rng = np.random.default_rng(seed)
    offset, scale = rng.uniform(-2.0, 3.0, size=6), rng.uniform(0.5, 3.0, size=6)
    return _features(rng, 64, offset, scale), [_features(rng, 64, offset, scale) for _ in range(count)]


def _demo_model(fn, num_units: int, seed: int):
    """A one-layer Keras model built with ``fn(prev_layer, num_units)``."""
    import bnlab

    keras = bnlab.tf.keras
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(6,))
    return keras.Model(inputs, fn(inputs, num_units))


def output_moves(layer_fn, num_units: int = 4, warmup: int = WARMUP, steps: int = 6, seed: int = 0) -> list[float]:
    """Train a one-layer model built with ``layer_fn`` for ``warmup`` batches (forward passes only: the weights
    stay put), then return the mean absolute change of its inference-mode output on a fixed set of examples
    after each of ``steps`` further training batches. Only the population statistics can move it."""
    import bnlab

    tf = bnlab.tf
    probe, batches = _demo_data(seed, warmup + steps)
    model = _demo_model(layer_fn, num_units, seed)
    train = tf.function(lambda x: model(x, training=True))
    infer = tf.function(lambda x: model(x, training=False))
    for batch in batches[:warmup]:
        train(batch)
    before, moves = np.asarray(infer(probe)), []
    for batch in batches[warmup:]:
        train(batch)
        after = np.asarray(infer(probe))
        moves.append(float(np.mean(np.abs(after - before))))
        before = after
    return moves


def show_classmate_symptom(recording: dict | None = None) -> None:
    """Print the recorded symptom: how much each layer's inference-mode output moved after each training batch
    (of the classmate drawn for this notebook's student, unless ``recording`` is given)."""
    moves = (recording or classmate())["symptom"]
    steps = len(next(iter(moves.values())))
    print(
        f"Inference-mode output on the same 64 examples: mean absolute change after each of {steps} more training "
        f"batches\n(recorded after {WARMUP} training batches; weights fixed, so only the population statistics can "
        "move it)"
    )
    width = max(len(name) for name in moves)
    for name, row in moves.items():
        print(f"  {name:<{width}}  " + "  ".join(f"{m:.4f}" for m in row))


def _print_trace(name: str, unit: int, table: list[dict], first: int) -> None:
    print(f"{name}: population mean of unit {unit} around {len(table)} training batches (after {first - 1} of them)")
    print(f"  {'batch':>5}  {'population mean before':>22}  {'mean of this batch':>18}  {'population mean after':>21}")
    for i, row in enumerate(table, first):
        print(f"  {i:>5}  {row['before']:>22.4f}  {row['batch']:>18.4f}  {row['after']:>21.4f}")


def show_classmate_trace(recording: dict | None = None) -> list[dict]:
    """Print the recorded trace of one unit's population mean in the classmate's layer (the one drawn for this
    notebook's student, unless ``recording`` is given); return its rows."""
    recording = recording or classmate()
    _print_trace(CLASSMATE_NAME, recording["unit"], recording["trace"], WARMUP + 1)
    return [dict(row) for row in recording["trace"]]


# the largest share of a new batch in the population statistics that the checks accept (their decay bound)
MAX_SHARE = 1 - MIN_MOMENTUM
# ... and the smallest (a decay above MAX_MOMENTUM leaves the initial statistics weighing more than half after the run)
MIN_SHARE = 1 - MAX_MOMENTUM


def population_trace(layer_fn, num_units: int = 4, warmup: int = WARMUP, rows: int = 4, seed: int = 0):
    """``(unit, rows)``: one unit's population mean through ``rows`` training batches of a one-layer model built
    with ``layer_fn`` (after ``warmup`` batches), each row holding its value ``before`` the batch, that batch's own
    mean (``batch``) of the tensor the BatchNormalization layer normalizes, and its value ``after``; ``None`` when
    the layer has no Keras BatchNormalization layer."""
    import bnlab

    model = _demo_model(layer_fn, num_units, seed)
    norms = [layer for layer in model.layers if isinstance(layer, bnlab.tf.keras.layers.BatchNormalization)]
    if not norms:
        return None
    norm = norms[-1]
    normalized = bnlab.tf.keras.Model(model.input, norm.input)  # the tensor its statistics describe
    train = bnlab.tf.function(lambda x: model(x, training=True))
    _, batches = _demo_data(seed, warmup + rows)
    for batch in batches[:warmup]:
        train(batch)
    unit = int(np.argmax(np.var(np.asarray(normalized(batches[warmup])), axis=0)))  # a unit that is not dead
    table = []
    for batch in batches[warmup:]:
        before = float(norm.moving_mean.numpy()[unit])
        batch_mean = float(np.mean(np.asarray(normalized(batch))[:, unit]))
        train(batch)
        table.append({"before": before, "batch": batch_mean, "after": float(norm.moving_mean.numpy()[unit])})
    return unit, table


def trace_statistics(
    layer_fn, num_units: int = 4, warmup: int = WARMUP, rows: int = 4, seed: int = 0, verdict: bool = False
) -> list[dict]:
    """Print :func:`population_trace` of ``layer_fn`` as a table and return its rows.

    ``verdict=True`` also measures the share of each new batch in the population mean and says whether it is
    within what the course accepts (at most :data:`MAX_SHARE`).
    """
    name = getattr(layer_fn, "__name__", "your layer")
    traced = population_trace(layer_fn, num_units, warmup, rows, seed)
    if traced is None:
        print(f"{name} has no Keras BatchNormalization layer: there are no population statistics to follow.")
        return []
    unit, table = traced
    _print_trace(name, unit, table, warmup + 1)
    if verdict:
        _print_verdict(name, table)
    return table


def _print_verdict(name, table) -> None:
    shares = [
        (r["after"] - r["before"]) / (r["batch"] - r["before"]) for r in table if abs(r["batch"] - r["before"]) > 1e-6
    ]
    share = float(np.median(shares)) if shares else 0.0
    if share <= 1e-6:
        print(
            f"The symptom is gone, but so is learning: {name}'s population statistics do not move in training "
            "mode. A frozen layer normalizes nothing while it trains (lesson, section 2)."
        )
    elif share < MIN_SHARE - MOMENTUM_TOLERANCE:
        print(
            f"Not fixed the other way: each training batch makes up less than {MIN_SHARE:.2%} of the population mean "
            f"after it (decay above {MAX_MOMENTUM:.5f}), so after the exercise's {NUM_BATCHES} batches the population "
            "statistics still hold more than half of their starting zeros and ones (lesson, section 2)."
        )
    elif share <= MAX_SHARE + MOMENTUM_TOLERANCE:
        print(
            f"Fixed: each training batch makes up at most {MAX_SHARE:.0%} of the population mean after it (decay "
            f"{1 - MAX_SHARE:g} or more). The smaller the share (Keras' default: 1%), the more batches the average "
            "spans and the steadier the inference-mode output."
        )
    else:
        print(
            f"Not fixed: each training batch makes up more than {MAX_SHARE:.0%} of the population mean after it, so "
            "the last batches outweigh the whole history "
            "(lesson, section 2, 'Population statistics as a moving average')."
        )
