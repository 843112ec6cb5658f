"""nbgrader settings for a student's JupyterLab (the Assignments tab and the Validate button).

`make lab` of the student bundle installs this file as `.venv/etc/jupyter/nbgrader_config.py`: nbgrader
then finds a configuration (and does not warn that it has none), knows the course, and gives a cell of
the notebooks as long to run under Validate as it gets when the course is graded.
"""

c = get_config()  # noqa: F821 - provided by nbgrader

c.CourseDirectory.course_id = "batchnorm"
c.Execute.timeout = 300

# `nbgrader validate` in a terminal lists the answers graded only after submission where it would say a bare
# "Success!" (the Validate button's dialog says the same through jupyter/validate-extension)
from bnlab.exercise import explain_validation  # noqa: E402 - after get_config, as nbgrader reads the file

explain_validation()
