"""Numerical checks behind the graded cells of the batch-normalization exercise.

Each ``check_*`` function runs a student's function on small synthetic inputs, the way the notebook
runs it (inside ``tf.function``), compares what it does with the NumPy reference, returns None, and
on failure raises :class:`CheckFailed` (an :class:`AssertionError`) whose message says what is wrong,
why it matters, what to try and which lesson section explains it, with no grader frames. The modules:

- :mod:`bnlab.grading.checks`: the layer checks and their judging (NumPy only);
- :mod:`bnlab.grading.step_checks`: the checks of ``train_step``, ``predict`` and the answers
  (multiple choice and numeric, each student's own: :mod:`bnlab.variants`);
- :mod:`bnlab.grading.backward`: Part 4's check of a NumPy backward pass, with its probe and its TensorFlow
  reference (autodiff, imported only when a check needs it) in :mod:`bnlab.grading.backward_probe`;
- :mod:`bnlab.grading.numeric`: test inputs and the reference forward pass;
- :mod:`bnlab.grading.probes`: the TensorFlow side: student functions run and reported as arrays;
- :mod:`bnlab.grading.errors`: :class:`CheckFailed` and the lesson sections its messages point to;
- where the course is graded (not in a student's copy): every check runs again out of the notebook's reach, on the
  computation exported by :mod:`bnlab.grading.worker` and :mod:`bnlab.grading.export` and run by
  :mod:`bnlab.grading.judge`, with :mod:`bnlab.grading.wire` between the processes (docs/integrity.md).

``api="keras"`` (Part 1): ``fully_connected(prev_layer, num_units)`` and ``conv_layer(prev_layer,
layer_depth)`` apply Keras layers; ``train_step(model, optimizer, images, labels)`` and
``predict(model, images)`` choose the mode. ``api="nn"`` (Part 2): the layer functions take
``is_training`` and create their variables with :func:`bnlab.nn.get_variable`.
Importing this package does not import TensorFlow (Part 4's process, where it cannot be imported, uses it).
"""

from bnlab.grading.backward import check_backward
from bnlab.grading.checks import (
    MIN_MOMENTUM,
    check_inference_output,
    check_population_statistics,
    check_structure,
    check_training_output,
)
from bnlab.grading.errors import CheckFailed
from bnlab.grading.step_checks import check_choice, check_number, check_predict, check_train_step

__all__ = [
    "check_structure",
    "check_population_statistics",
    "check_training_output",
    "check_inference_output",
    "check_train_step",
    "check_predict",
    "check_choice",
    "check_number",
    "check_backward",
    "CheckFailed",
    "MIN_MOMENTUM",
]
