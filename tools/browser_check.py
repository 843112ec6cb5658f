"""Watch the browser tests: run tests/browser with a visible Chromium window, by hand.

The checks themselves live in ``tests/browser`` (pytest + Playwright, part of ``make test``):
the student's day (exercise checks, live training panel, nbgrader's Validate, the lesson's
comparison controls), the instructor's day (formgrader on a scratch course) and a quiet, offline
JupyterLab. This script runs that same suite with the browser window shown and slowed down, so a
person can follow what it does. Screenshots of every step land in ``test-artifacts/browser/``.

    python tools/browser_check.py                   # all browser tests, headed, 250 ms per action
    python tools/browser_check.py -k lesson         # any pytest arguments pass through
    python tools/browser_check.py --headless        # as CI runs them
    python tools/browser_check.py --slowmo 0

Needs Chromium (``apt-get install chromium``) and the test extra (``pip install -e '.[test]'``);
a headed run needs a display (``$DISPLAY``; on a server: ``xvfb-run python tools/browser_check.py``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--headless", action="store_true", help="no window (as in CI)")
    parser.add_argument("--slowmo", type=int, default=250, help="milliseconds Playwright waits after each action")
    args, pytest_args = parser.parse_known_args(argv)
    if not args.headless and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        print("No display to show the browser on: run it under xvfb-run, or pass --headless.", file=sys.stderr)
        return 2
    env = {
        **os.environ,
        "BNLAB_BROWSER_HEADED": "0" if args.headless else "1",
        "BNLAB_BROWSER_SLOWMO": str(0 if args.headless else args.slowmo),
    }
    command = [sys.executable, "-m", "pytest", "tests/browser", "-m", "browser", "-v", *pytest_args]
    return subprocess.call(command, cwd=REPO, env=env)


if __name__ == "__main__":
    sys.exit(main())
