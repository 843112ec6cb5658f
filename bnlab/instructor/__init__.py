"""Instructor tooling: everything that runs nbgrader, grades a class or builds what students receive.

It never ships to students (the student bundle leaves this folder out) and imports no TensorFlow, so a
grading coordinator stays light. It may import the course side (``bnlab`` outside this folder); the course
side never imports it. ``docs/architecture.md`` draws the layers.
"""
