"""The course's benchmarks, run as ``python -m bnlab.instructor.bench COMMAND``: training accuracy and time,
grading cost (one submission, a class), and the monitor's drawing cost."""
