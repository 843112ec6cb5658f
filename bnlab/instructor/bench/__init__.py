"""The course's benchmarks: training accuracy and time, grading cost, and the monitor's drawing cost."""
