"""``python -m bnlab.instructor.autograde ASSIGNMENT``: grade new or changed submissions (``make autograde``)."""

import sys

from bnlab.instructor.autograde.coordinator import main

sys.exit(main())
