# Batch Normalization in TensorFlow: every command of the course. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.bnlab-installed
# nbgrader runs `alembic` from PATH, so every target sees the venv's bin first.
export PATH := $(BIN):$(PATH)
ASSIGNMENTS := $(notdir $(wildcard source/*))
ASSIGNMENT ?= batch_norm_exercises
PORT ?= 8888
# The folder `make lab` serves (the browser tests serve a scratch copy of release/).
LAB_ROOT ?= release
# Where `make lab-settings` installs the course's JupyterLab settings (jupyter/README.md).
LAB_PREFIX ?= $(VENV)
LAB_ARGS ?=
PYTEST_ARGS ?=
# `make test` and `make test-fast` run the tests on TEST_WORKERS processes (pytest-xdist; tests/conftest.py says
# which tests share one); TEST_WORKERS=0 runs them in one process, as plain `pytest` does.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadgroup
# Jupyter refuses to run as root (containers) unless told to.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: help setup data lab lab-settings test test-fast release check-release bench grade-demo \
        autograde regrade feedback export collect bundle clean add-cells lint format hub hub-proxy

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || { echo "Creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@$(BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
	  { echo "The course needs Python 3.11; $(VENV) has $$($(BIN)/python --version). Remove $(VENV) and set PYTHON=python3.11."; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar off -e '.[test]'
	@touch $@

setup: $(STAMP)  ## create .venv and install the course (only when pyproject.toml changed)
	@echo "Course environment ready in $(VENV)."

data: $(STAMP)  ## fetch and verify MNIST into the cache (BNLAB_DATA_DIR overrides where)
	$(BIN)/python -m bnlab.data

lab: setup data lab-settings  ## start JupyterLab on the student notebooks in release/
	$(BIN)/jupyter lab --ServerApp.root_dir=$(LAB_ROOT) --port=$(PORT) $(ROOT_FLAG) $(LAB_ARGS)

lab-settings:  ## install the course's quiet, offline JupyterLab settings into $(LAB_PREFIX) (jupyter/README.md)
	@install -D -m 644 jupyter/overrides.json $(LAB_PREFIX)/share/jupyter/lab/settings/overrides.d/bnlab-course.json
	@install -D -m 644 jupyter/jupyter_lab_config.json $(LAB_PREFIX)/etc/jupyter/jupyter_lab_config.json
	@mkdir -p $(LAB_PREFIX)/share/jupyter/labextensions/bnlab-validate
	@cp -R jupyter/validate-extension/. $(LAB_PREFIX)/share/jupyter/labextensions/bnlab-validate
	@echo "Course JupyterLab settings installed in $(LAB_PREFIX) (no news prompt, no news or update checks; Validate names what is graded after submission)."

test: setup data  ## set up, then run the whole test suite
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

lint: setup  ## ruff: is the library and its tests formatted and free of lint? (CI runs it; `make format` fixes)
	$(BIN)/ruff format --check --diff .
	$(BIN)/ruff check .

format: setup  ## ruff: format the code and apply the safe lint fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test-fast: setup data  ## the unit tests only (no notebook execution, no nbgrader pipeline)
	$(BIN)/python -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

release: setup  ## regenerate release/ and solutions/ from source/ (commit them); a release that fails changes nothing
	$(BIN)/python -m bnlab.instructor.release

add-cells: setup  ## after submissions: register graded cells new in source/ (gradebook backed up), release; DROP_CELLS=1 deletes removed ones
	$(BIN)/python -m bnlab.instructor.release --add-cells $(if $(DROP_CELLS),--drop-cells)

check-release: setup  ## fail when release/ or solutions/ are stale
	$(BIN)/python -m bnlab.instructor.release --check

bench: setup data  ## 800-batch runs, 5 seeds: accuracy, where the time goes, grading cost (more: python -m bnlab.instructor.bench -h)
	$(BIN)/python -m bnlab.instructor.bench training

grade-demo: setup data  ## autograde the solution as a demo student in a scratch course, with feedback and CSV
	$(BIN)/python -m bnlab.instructor.scratch demo

# Parallel grading (bnlab.instructor.autograde): JOBS=N submissions at a time (default: the cores), or
# SCHEDULER=tcp://host:8786 for a Dask cluster; AUTOGRADE_ARGS adds options (--regrade-all,
# --wall-time S, --memory-gib G, --cell-timeout S, --network require, --isolation require, --student ID;
# see --help). Student code runs in the bubblewrap sandbox (bnlab.instructor.isolation) on every grading route.
JOBS ?=
SCHEDULER ?=
AUTOGRADE_ARGS ?=
AUTOGRADE := $(BIN)/python -m bnlab.instructor.autograde $(ASSIGNMENT) $(if $(JOBS),--jobs $(JOBS)) \
             $(if $(SCHEDULER),--scheduler $(SCHEDULER)) $(AUTOGRADE_ARGS)

autograde: setup  ## grade new or changed submissions in parallel (JOBS=N, SCHEDULER=tcp://host:8786), then export
	$(AUTOGRADE)

regrade: setup  ## after editing a test cell in source/: regenerate $(ASSIGNMENT), regrade everyone, list changed scores
	$(AUTOGRADE) --regrade

feedback: setup  ## nbgrader generate_feedback $(ASSIGNMENT)
	$(BIN)/python -m bnlab.instructor.nbgrader generate_feedback $(ASSIGNMENT) --force

export: setup  ## grades.csv (nbgrader export, graded assignments only), grades_per_question.csv, grades_canvas.csv (Canvas import)
	$(BIN)/python -m bnlab.instructor.lms export $(ASSIGNMENT) $(if $(CANVAS_COLUMN),--canvas-column "$(ASSIGNMENT)=$(CANVAS_COLUMN)")

collect: setup  ## ARCHIVE=path.zip: an LMS download into submitted/ (AGAIN=1 repeats one); else nbgrader collect (exchange)
	$(BIN)/python -m bnlab.instructor.lms collect $(ASSIGNMENT) $(if $(ARCHIVE),--archive "$(ARCHIVE)") $(if $(AGAIN),--again)

# `make hub` (as root): a local JupyterHub with real Unix users for a class on one machine (docs/jupyterhub.md).
HUB_STATE ?= /srv/bnlab-hub
HUB_PORT ?= 8000
HUB_ARGS ?=
hub: setup data lab-settings  ## a local JupyterHub: teacher, grader, two students, exchange, formgrader (root; docs/jupyterhub.md)
	$(BIN)/python -m bnlab.instructor.hub start --state $(HUB_STATE) --port $(HUB_PORT) $(HUB_ARGS)

hub-proxy: setup  ## JupyterHub's proxy (configurable-http-proxy, pinned in bnlab/instructor/hub.py) from npm into .venv
	$(BIN)/python -m bnlab.instructor.hub proxy

bundle: setup  ## what students receive: dist/bnlab-student-VERSION/ and .zip (release/ notebooks + library)
	$(BIN)/python -m bnlab.instructor.bundle

# The backup runs before the venv goes: with the venv's python, else $(PYTHON) (bnlab.instructor.release needs only the stdlib).
clean:  ## remove the venv, feedback/ and caches; keeps gradebook.db and autograded/ (grades), backed up to backups/ first
	@if [ -f gradebook.db ]; then $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) -m bnlab.instructor.release --backup-gradebook --course "$(CURDIR)"; fi
	rm -rf $(VENV) feedback .pytest_cache
	@echo "Kept gradebook.db and autograded/ (every grade; the MNIST cache too). Move them away yourself to start a new term."
