"""Grading a class: the coordinator sends one job per submission to Dask, each job grades in its own
scratch course under resource limits, and the record writes the results into the course's gradebook."""
