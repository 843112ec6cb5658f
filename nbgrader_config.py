"""nbgrader configuration of the course (run nbgrader from the repository root, through `make`)."""

import os

from bnlab import settings  # the environment variables, read in one place (no TensorFlow)
from bnlab.exercise import explain_validation  # Validate lists what is graded only after submission
from bnlab.instructor.admission import before_copy  # nbgrader's pre-convert hook: only regular files get in

c = get_config()  # noqa: F821 - provided by nbgrader

# `nbgrader validate`: where nbgrader would say a bare "Success!", it lists the multiple-choice, numeric and written
# answers, which are graded only after submission (nbgrader has no setting for that line). JupyterLab's Validate
# dialog says the same through the course's extension (jupyter/validate-extension, installed by `make lab-settings`).
explain_validation()

here = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.course_id = "batchnorm"
# The course directory is the folder nbgrader runs in: the repository root for instructors; the
# grader and the tests run nbgrader in scratch courses and override it on the command line.
c.CourseDirectory.root = settings.course_root(here)
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.solution_directory = "solutions"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"

# What a student sees in place of a solution: what to write, and an error if they forget.
c.ClearSolutions.code_stub = {
    "python": "# YOUR CODE HERE: replace this line and the next with your implementation\n"
    'raise NotImplementedError("Write this part of the exercise (see the instructions above)")',
}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Each cell runs with a deadline that fits the shortened training on 2 CPU cores; the whole
# notebook is shortened under nbgrader (bnlab.settings: 10 batches a run; `make bench` times grading).
c.Execute.timeout = 300
c.Execute.interrupt_on_timeout = True
# A test cell that writes to stderr gets zero points, passing or not. bnlab silences TensorFlow,
# and as a second line of defence TensorFlow's C++ log lines (I1122 12:00:00.000 ... file.cc:12])
# and absl's start-up note are dropped from stderr before grading.
c.IgnorePattern.pattern = (
    r"(^|\n)([IWE]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ [\w.]+:\d+\]|WARNING: All log messages before absl)"
)

# Student code runs in the kernel that runs the test cells, so it could rewrite the checks. After the
# kernel ran, bnlab.instructor.preprocessors.verify re-runs every graded test cell (its source from the gradebook) with
# the checks in nbgrader's own process and the student's code in one separate worker; a cell that
# passed in the kernel but fails there scores zero and the submission is flagged (log, metadata).
# StartVerification begins that re-run before the kernel starts, so the two overlap (it needs nothing
# from the kernel); VerifyChecks collects it. Without StartVerification the re-run follows the kernel.
# SandboxedExecute is nbgrader's Execute (configured as c.Execute) with the kernel inside bubblewrap,
# like the re-run's worker: student code sees only its own submission (bnlab.instructor.isolation, BNLAB_ISOLATION).
# A graded cell the student deleted is put back from the gradebook and graded (nbgrader's OverwriteCells with
# add_missing_cells, placed robustly: bnlab.instructor.preprocessors.review); FlagForReview flags in the gradebook,
# for the formgrader, a notebook with a restored cell, a cell that ended the kernel or an unconfirmed check.
# Only regular files enter grading: before nbgrader copies anything from submitted/ to autograded/ or reads
# timestamp.txt, bnlab.instructor.admission moves what is not a regular file (a link, a pipe, a device, a hard
# link) and a timestamp.txt that holds no time to submitted/.refused/, never following it, and flags the
# submission; the rest is graded.
c.Autograde.pre_convert_hook = before_copy
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "bnlab.instructor.preprocessors.review.RestoreMissingCells",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.Autograde.autograde_preprocessors = [
    "bnlab.instructor.preprocessors.verify.StartVerification",
    "bnlab.instructor.preprocessors.execute.SandboxedExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "bnlab.instructor.preprocessors.verify.VerifyChecks",
    "nbgrader.preprocessors.SaveAutoGrades",
    "bnlab.instructor.preprocessors.review.FlagForReview",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
    "bnlab.instructor.preprocessors.sanitize.SanitizeSubmission",  # last: no script, capped sizes (grades saved)
]

# Hidden tests stay hidden in the feedback students receive.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    "bnlab.instructor.preprocessors.feedback.HideHiddenTests",
    "bnlab.instructor.preprocessors.sanitize.SanitizeSubmission",
]

# solutions/ is committed and checked for staleness, so it is generated without executing the
# notebook (outputs would differ from run to run); CI executes it with nbval instead.
c.GenerateSolution.preprocessors = [
    "nbgrader.preprocessors.IncludeHeaderFooter",
    "nbgrader.preprocessors.LockCells",
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.ClearMarkScheme",
]

# Grade exports (`nbgrader export`, `make export`; bnlab.instructor.exports) leave out ungraded notebooks such as
# the lesson.
c.ExportApp.plugin_class = "bnlab.instructor.exports.GradedCsvExportPlugin"
# `make collect ARCHIVE=...` (bnlab.instructor.lms, with nbgrader's FileNameCollectorPlugin) and `nbgrader
# zip_collect`: file names as Canvas writes them, e.g. doejane_12345_67890_Batch_Normalization_Exercises.ipynb
# (any case and script; _LATE_ and a resubmission's -N suffix are groups); the Canvas user id becomes the student id.
c.FileNameCollectorPlugin.named_regexp = (
    r"(?i)^(?:.*[/\\])?[^/\\]+?_(?P<late>late_)?(?P<student_id>\d+)_\d+_"
    r"(?P<file_id>[^/\\]+?)(?:-(?P<attempt>\d+))?\.ipynb$"
)  # = bnlab.instructor.lms.CANVAS_PATTERN
# Late work (nbgrader's AssignLatePenalties, with bnlab.instructor.latework.LatePenalty). A due date per assignment, as
# nbgrader parses it (give the time zone; without one it is UTC); `make collect` writes it into the
# gradebook. No due date: nothing is late. LatePenalty takes percent_per_day of a notebook's score per
# started day late (up to max_percent); a Canvas LATE file carries no time and counts as one day late.
c.LatePenalty.duedates = {}  # e.g. {"batch_norm_exercises": "2026-12-15 23:59:00 Europe/Berlin"}
c.AssignLatePenalties.plugin_class = "bnlab.instructor.latework.LatePenalty"
c.LatePenalty.percent_per_day = 10.0
c.LatePenalty.max_percent = 100.0
# nbgrader's exchange (release_assignment / fetch_assignment / submit / collect) on a shared
# machine: BNLAB_EXCHANGE names its folder (nbgrader's default is /srv/nbgrader/exchange).
if settings.exchange():
    c.Exchange.root = settings.exchange()
