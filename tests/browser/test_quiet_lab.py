"""The course's JupyterLab stays quiet and offline: no news pop-up, no news or update checks.

`make lab` installs the course's settings (jupyter/README.md); the server runs with an empty
user-settings folder, so only those settings can keep the pop-up away.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from labdriver import Steps, news_prompts

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

NOTIFICATION = "@jupyterlab/apputils-extension:notification"


def test_lab_opens_without_news_prompt_or_internet(student_lab, page):
    base, root = student_lab
    steps = Steps(page, "quiet-lab")

    with steps("open JupyterLab on the student folders"):
        page.goto(f"{base}/lab?reset")  # a fresh workspace, as on a student's first start
        listing = page.locator(".jp-DirListing-content")
        for folder in sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            listing.get_by_text(folder, exact=True).wait_for(timeout=60_000)
        time.sleep(5)  # JupyterLab asks its news question a moment after start-up
        assert news_prompts(page) == 0, "JupyterLab asks 'Would you like to get notified about official Jupyter news?'"

    with steps("the course settings turn the news and update checks off"):
        with urllib.request.urlopen(f"{base}/lab/api/settings/{NOTIFICATION}", timeout=10) as response:
            plugin = json.load(response)
        defaults = {key: plugin["schema"]["properties"][key]["default"] for key in ("fetchNews", "checkForUpdates")}
        assert defaults == {"fetchNews": "false", "checkForUpdates": False}, (
            f"the course's overrides are not in: {defaults}"
        )
        assert not plugin["settings"], f"a user setting decides instead of the course's: {plugin['settings']}"
        config = json.loads(page.locator("#jupyter-config-data").text_content())
        assert config.get("news", {}).get("disabled") is True, "the server would fetch the Jupyter news feed"
        assert not page.external_requests, f"the page reached beyond the machine: {page.external_requests[:5]}"
