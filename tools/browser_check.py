"""Check the live training monitor (bnlab.monitor) in a real browser: JupyterLab 4 + headless Chromium.

What it checks
--------------
It starts JupyterLab from the project's venv on 127.0.0.1 (free port, empty token, a temporary
root directory, ``BNLAB_SHORT`` unset), writes a notebook there and drives it with Playwright:

1. Cell 1 trains two fake runs (400 batches of 10 ms each) through a ``TrainingMonitor`` and
   closes it. While the cell runs, the script samples the DOM every half second (number of
   outputs of that cell, whether the ipywidgets panel is there, a SHA-256 of the bytes behind its
   ``<img>``) and takes three screenshots a few seconds apart. A MutationObserver counts every
   output the cell ever gets and the largest number it has at once, so a pile-up or a flicker
   (panel removed and re-added) between two samples is caught too. Expected: one output holding
   the live panel, always the same DOM node, whose image changes between samples; after
   ``monitor.close()`` exactly one ``image/png`` output and one stdout line starting with
   ``Summary:``, no widget left, no stderr. The saved notebook must hold the same two outputs.
2. Cell 2 displays ``bnlab.lesson.ComparisonControls`` (MNIST must already be cached): three
   dropdowns and the "Train with and without BN" button must render. Unless ``--no-click``, the
   button is clicked (a short 50-batch comparison) and the monitor panel plus the results table
   must appear in the controls' Output widget, with no error line.

It also warns (without failing) when the panel's log hides its newest lines below its scroll
fold, or when the live panel goes more than 3 s without an update while the cell runs.

It prints a report and exits 1 if an expectation fails (2 if the setup itself failed).
Screenshots and the report (``report.json``) go to ``--out`` (default ``/tmp/browser_check``).

How to run it
-------------
Not part of the test suite or CI (CI has no browser). Needs Chromium and Playwright, kept out
of the project's venv and out of pyproject.toml::

    apt-get update && apt-get install -y chromium        # Debian package, /usr/bin/chromium
    python3 -m venv /tmp/pwvenv && /tmp/pwvenv/bin/pip install playwright
    /tmp/pwvenv/bin/python tools/browser_check.py [--out DIR] [--no-click] [--headed]

(``playwright install`` is not needed: the script uses the system Chromium through
``--chromium``.) JupyterLab, ipywidgets and bnlab come from ``--venv`` (default: the ``.venv``
next to this repository's ``pyproject.toml``). Jupyter is started in its own process group and
killed with it at the end.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

MONITOR_CELL = """\
import time, bnlab
from bnlab.monitor import TrainingMonitor
m = TrainingMonitor(title="browser check", total_batches=400)
for name in ("run A", "run B"):
    r = m.run(name)
    for b in range(1, 401):
        time.sleep(0.01)
        if b % 25 == 0: r.log(b, 1.0 / b, 1 - 1.0 / b, split="train")
        if b % 100 == 0: r.log(b, 1.2 / b, 1 - 1.2 / b, split="validation")
m.close()"""

CONTROLS_CELL = """\
from bnlab.data import load_mnist
from bnlab.lesson import ComparisonControls
controls = ComparisonControls(load_mnist(), num_batches=50, validation_size=1000, test_size=1000)
controls"""

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

# One JS function evaluated in the page: the state of the cell with index `i`.
CELL_STATE_JS = """
async (i) => {
  const cells = document.querySelectorAll('.jp-Notebook .jp-Cell');
  const cell = cells[i];
  if (!cell) return null;
  const area = cell.querySelector('.jp-OutputArea');
  const outputs = area ? Array.from(area.querySelectorAll(':scope > .jp-OutputArea-child > .jp-OutputArea-output')) : [];
  const prompt = cell.querySelector('.jp-InputPrompt');
  const img = cell.querySelector('.jp-OutputArea-output .widget-image, .jp-OutputArea-output .jupyter-widgets img');
  let imgHash = null, imgBytes = null, imgError = null;
  if (img && img.src) {
    try {
      const buf = await (await fetch(img.src)).arrayBuffer();
      imgBytes = buf.byteLength;
      const digest = await crypto.subtle.digest('SHA-256', buf);
      imgHash = Array.from(new Uint8Array(digest)).slice(0, 6).map(b => b.toString(16).padStart(2, '0')).join('');
    } catch (e) { imgError = String(e); }
  }
  const first = outputs[0];
  if (first && !first.dataset.bcId) first.dataset.bcId = String(Date.now());
  return {
    prompt: prompt ? prompt.textContent.trim() : null,
    n_outputs: outputs.length,
    mime_types: outputs.map(o => o.getAttribute('data-mime-type')),
    texts: outputs.map(o => o.textContent.slice(0, 300)),
    first_output_id: first ? first.dataset.bcId : null,
    widget: !!cell.querySelector('.jp-OutputArea-output .jupyter-widgets'),
    img_src: img ? img.src : null,
    img_hash: imgHash, img_bytes: imgBytes, img_error: imgError,
    img_width: img ? img.naturalWidth : null,
    progress: (() => { const p = cell.querySelector('.widget-hprogress .widget-label, .widget-progress .widget-label');
                       return p ? p.textContent.trim() : null; })(),
    // The panel's log (a <pre> with max-height): how many of its lines are scrolled out of view.
    log: (() => {
      const pre = cell.querySelector('.jp-OutputArea-output .jupyter-widgets pre');
      if (!pre || !pre.textContent) return null;
      const lines = pre.textContent.split('\\n');
      const lineHeight = parseFloat(getComputedStyle(pre).lineHeight) || 1.2 * parseFloat(getComputedStyle(pre).fontSize);
      const below = pre.scrollHeight - pre.clientHeight - pre.scrollTop;
      return {lines: lines.length, hidden_below: Math.max(0, Math.round(below / lineHeight)),
              last_line: lines[lines.length - 1]};
    })(),
    stderr: outputs.filter(o => o.getAttribute('data-mime-type') === 'application/vnd.jupyter.stderr').length,
    area_height: area ? Math.round(area.getBoundingClientRect().height) : 0,
  };
}
"""

# Counts, for the cell with index `i`, every output child ever added and the most present at once.
OBSERVER_JS = """
(i) => {
  const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[i];
  const area = cell.querySelector('.jp-OutputArea');
  const outputsNow = () => area.querySelectorAll(':scope > .jp-OutputArea-child').length;
  const stats = {added: 0, removed: 0, max_children: outputsNow(),
                 widget_views_added: 0, timeline: [], last: null, t0: performance.now()};
  const obs = new MutationObserver((records) => {
    for (const r of records) {
      for (const n of r.addedNodes) {
        if (n.nodeType !== 1) continue;
        if (n.parentElement === area && n.classList.contains('jp-OutputArea-child')) stats.added += 1;
        if (n.classList && n.classList.contains('jupyter-widgets') && n.closest('.jp-OutputArea-output')
            && !n.parentElement.closest('.jupyter-widgets')) stats.widget_views_added += 1;
      }
      for (const n of r.removedNodes) {
        if (n.nodeType === 1 && r.target === area && n.classList.contains('jp-OutputArea-child')) stats.removed += 1;
      }
    }
    stats.max_children = Math.max(stats.max_children, outputsNow());
    const snapshot = Array.from(area.children).map(c => {
      const o = c.querySelector('.jp-OutputArea-output');
      return (o && o.getAttribute('data-mime-type')) || (c.querySelector('.jupyter-widgets') ? 'widget' : c.className);
    }).join(', ');
    if (stats.timeline.length < 50 && snapshot !== stats.last) {
      stats.timeline.push(Math.round(performance.now() - stats.t0) + ' ms: [' + snapshot + ']');
      stats.last = snapshot;
    }
  });
  obs.observe(area, {childList: true, subtree: true});
  window.__bcStats = stats;
  return true;
}
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_notebook(path: Path) -> None:
    def cell(source: str) -> dict:
        return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                "source": source.splitlines(keepends=True)}

    notebook = {
        "cells": [cell(MONITOR_CELL), cell(CONTROLS_CELL)],
        "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    path.write_text(json.dumps(notebook, indent=1))


@contextlib.contextmanager
def jupyter_lab(venv: Path, root: Path, log_path: Path):
    """Start JupyterLab on 127.0.0.1 in its own process group; yield its base URL; kill the group."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "BNLAB_SHORT"}
    env["JUPYTER_RUNTIME_DIR"] = str(root / ".runtime")
    # Own settings dir: no news toast over the screenshots, nothing written to ~/.jupyter.
    settings = root / ".settings"
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env["JUPYTERLAB_SETTINGS_DIR"] = str(settings)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    cmd = [str(venv / "bin" / "jupyter"), "lab", "--no-browser", "--allow-root",
           "--ServerApp.token=", "--ServerApp.password=", "--ServerApp.ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}",
           f"--LabApp.workspaces_dir={root / '.workspaces'}",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {proc.returncode}; see {log_path}")
            try:
                with urllib.request.urlopen(f"{base}/api/status", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"jupyter lab did not answer within 90 s; see {log_path}")
            time.sleep(0.5)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        log.close()


def kernel_ready(base: str, timeout: float = 90) -> None:
    """Wait until the notebook's kernel is idle and the page is connected to it (server view)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(f"{base}/api/sessions", timeout=2) as response:
                sessions = json.load(response)
            kernels = [s["kernel"] for s in sessions if s.get("path", "").endswith("check.ipynb")]
            if kernels and kernels[0].get("execution_state") == "idle" and kernels[0].get("connections", 0) > 0:
                return
        time.sleep(0.5)
    raise RuntimeError(f"the kernel was not ready within {timeout} s")


def prompt_of(page, index: int) -> str:
    return page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-InputPrompt").inner_text().strip()


def run_cell(page, index: int) -> None:
    """Click into cell `index` (its editor) and press Shift+Enter, as a user would.

    Pressed again (up to 3 times) if the prompt still reads ``[ ]:`` 5 s later (a key press
    that arrives while the notebook panel is still connecting its kernel is dropped).
    """
    editor = page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-InputArea-editor")
    for _ in range(3):
        editor.click()
        page.keyboard.press("Shift+Enter")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if prompt_of(page, index) not in ("[ ]:", ""):
                return
            time.sleep(0.1)
    raise RuntimeError(f"cell {index} did not start after 3 Shift+Enter presses")


def short(value: str | None, n: int = 12) -> str:
    if value is None:
        return "-"
    return hashlib.sha256(value.encode()).hexdigest()[:n]


def check(page, base: str, out: Path, root: Path, click: bool) -> dict:
    failures: list[str] = []
    report: dict = {"url": f"{base}/lab/tree/check.ipynb", "samples": [], "failures": failures, "warnings": []}
    console_errors: list[str] = []
    page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: console_errors.append(f"pageerror: {exc}"))

    page.goto(report["url"])
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    kernel_ready(base)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
    page.evaluate(OBSERVER_JS, 0)

    # ---- cell 1: the live monitor ------------------------------------------------------------
    t0 = time.monotonic()
    run_cell(page, 0)
    shots_at: list[float] = []
    first_widget_at = None
    done_at = None
    while time.monotonic() - t0 < 180:
        time.sleep(0.5)
        state = page.evaluate(CELL_STATE_JS, 0)
        t = time.monotonic() - t0
        finished = state["prompt"] not in (None, "", "[*]:", "[ ]:") and "*" not in state["prompt"]
        if not finished or state["n_outputs"]:
            sample = {"t": round(t, 1), "phase": "after" if finished else "running", **state}
            report["samples"].append(sample)
        if state["widget"] and first_widget_at is None:
            first_widget_at = t
        if first_widget_at is not None and not finished and len(shots_at) < 3 and \
                (not shots_at or t - shots_at[-1] >= 3.0):
            path = out / f"monitor_running_{len(shots_at) + 1}.png"
            page.screenshot(path=str(path), full_page=False)
            shots_at.append(t)
            report["samples"][-1]["screenshot"] = str(path)
        if finished:
            done_at = t
            break
    if done_at is None:
        failures.append("cell 1 did not finish within 180 s")
    time.sleep(1.5)  # let late IOPub messages (update_display, comm close) arrive
    final = page.evaluate(CELL_STATE_JS, 0)
    final_shot = out / "monitor_after_close.png"
    page.locator(".jp-Notebook .jp-Cell").nth(0).screenshot(path=str(final_shot))
    page.screenshot(path=str(out / "monitor_after_close_page.png"))
    stats = page.evaluate("() => window.__bcStats")
    report["final"] = {**final, "screenshot": str(final_shot)}
    report["observer"] = stats

    running = [s for s in report["samples"] if s["phase"] == "running"]
    live = [s for s in running if s["widget"]]
    if len(live) < 2:
        failures.append(f"live panel seen in only {len(live)} samples while the cell ran")
    if any(s["n_outputs"] > 1 for s in running):
        failures.append("more than one output while the cell ran (pile-up)")
    if len({s["first_output_id"] for s in live}) > 1:
        failures.append("the live panel's output node was replaced while running (not updated in place)")
    hashes = [s["img_hash"] for s in live if s["img_hash"] and s["img_bytes"]]  # not the empty first image
    if len(set(hashes)) < 2:
        failures.append(f"the panel image did not change between samples ({len(set(hashes))} distinct)")
    if any(s["stderr"] for s in report["samples"]) or final["stderr"]:
        failures.append("stderr output in cell 1")
    if final["n_outputs"] != 2 or final["mime_types"][:1] != ["image/png"] or \
            final["mime_types"][1:] != ["application/vnd.jupyter.stdout"]:
        failures.append(f"after close: expected [image/png, stdout], got {final['mime_types']}")
    if final["widget"]:
        failures.append("a widget view is still shown after close")
    if len(final["texts"]) == 2 and (not final["texts"][1].startswith("Summary:") or final["texts"][1].count("\n") > 1):
        failures.append(f"after close: the stdout output is not one summary line: {final['texts'][1]!r}")
    if stats and stats["max_children"] > 2:
        failures.append(f"the output area held {stats['max_children']} outputs at once")
    if stats and stats["widget_views_added"] > 1:
        failures.append(f"the panel view was created {stats['widget_views_added']} times (flicker/re-render)")

    # Not failures (the brief's expectations hold without them), but worth a look.
    warnings = report["warnings"]
    hidden = [s for s in live if s.get("log") and s["log"]["hidden_below"] > 0]
    if hidden:
        worst = max(hidden, key=lambda s: s["log"]["hidden_below"])
        warnings.append(f"the panel's log hides its newest lines below the fold in {len(hidden)}/{len(live)} "
                        f"samples (up to {worst['log']['hidden_below']} of {worst['log']['lines']} lines; "
                        f"newest, not visible: {worst['log']['last_line']!r})")
    changes = [s["t"] for i, s in enumerate(live) if i and s["img_bytes"] and s["img_hash"] != live[i - 1]["img_hash"]]
    stamps = ([live[0]["t"]] if live else []) + changes + ([done_at] if done_at and live else [])
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    report["panel_image_changes_at"] = changes
    if gaps and max(gaps) > 3:
        warnings.append(f"the live panel (image, progress bar, status) went {max(gaps):.1f} s without an update "
                        f"while the cell ran {done_at:.1f} s; image changes at t = {changes}")

    # The saved notebook must hold the same static outputs.
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    time.sleep(2)
    saved = json.loads((root / "check.ipynb").read_text())
    saved_outputs = saved["cells"][0]["outputs"]
    report["saved_outputs"] = [
        {"output_type": o["output_type"], "keys": sorted(o.get("data", {})), "text": "".join(o.get("text", ""))[:120]}
        for o in saved_outputs]
    saved_types = [(o["output_type"], sorted(o.get("data", {})) or o.get("name")) for o in saved_outputs]
    if [t[0] for t in saved_types] != ["display_data", "stream"] or "image/png" not in saved_types[0][1] \
            or "application/vnd.jupyter.widget-view+json" in saved_types[0][1]:
        failures.append(f"saved notebook: unexpected outputs of cell 1: {saved_types}")

    # ---- cell 2: ComparisonControls ----------------------------------------------------------
    run_cell(page, 1)
    cell2 = page.locator(".jp-Notebook .jp-Cell").nth(1)
    controls: dict = {}
    try:
        cell2.locator(".jupyter-widgets button").first.wait_for(timeout=120_000)
        time.sleep(1)
        controls = page.evaluate("""() => {
          const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[1];
          return {
            dropdowns: Array.from(cell.querySelectorAll('.widget-dropdown')).map(d => ({
              label: (d.querySelector('label') || {}).textContent,
              value: (d.querySelector('select') || {}).value,
              options: Array.from(d.querySelectorAll('option')).map(o => o.textContent)})),
            buttons: Array.from(cell.querySelectorAll('button.jupyter-button')).map(b => b.textContent.trim()),
            stderr: cell.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]').length,
          };
        }""")
    except Exception as exc:
        failures.append(f"ComparisonControls did not render: {type(exc).__name__}: {exc}")
    cell2.screenshot(path=str(out / "controls.png"))
    report["controls"] = controls
    if controls:
        if len(controls["dropdowns"]) != 3:
            failures.append(f"ComparisonControls: {len(controls['dropdowns'])} dropdowns, expected 3")
        if "Train with and without BN" not in controls["buttons"]:
            failures.append(f"ComparisonControls: button missing ({controls['buttons']})")
        if controls["stderr"]:
            failures.append("ComparisonControls: stderr output")
    if click and controls:
        t1 = time.monotonic()
        cell2.locator("button.jupyter-button", has_text="Train with and without BN").click()
        result = None
        while time.monotonic() - t1 < 240:
            time.sleep(1)
            result = page.evaluate("""() => {
              const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[1];
              const out = cell.querySelector('.widget-output');
              const button = Array.from(cell.querySelectorAll('button.jupyter-button')).find(
                  b => b.textContent.includes('Train with and without BN'));
              return {disabled: button ? button.disabled : null,
                      panel: !!(out && out.querySelector('.widget-image')),
                      text: out ? out.innerText.slice(-600) : ''};
            }""")
            if result["text"] and "val acc" in result["text"] and not result["disabled"]:
                break
        result["seconds"] = round(time.monotonic() - t1, 1)
        report["click"] = result
        cell2.screenshot(path=str(out / "controls_after_train.png"))
        if not result["panel"]:
            failures.append("ComparisonControls: no monitor panel in the Output widget after Train")
        if "val acc" not in result["text"] or "Training failed" in result["text"]:
            failures.append(f"ComparisonControls: no results table after Train: {result['text'][-200:]!r}")

    report["console_errors"] = console_errors[:20]
    return report


def print_report(report: dict) -> None:
    print(f"notebook: {report['url']}")
    print(f"{'t (s)':>6}  {'phase':<8} {'prompt':<7} {'outputs':>7}  {'widget':<6} {'progress':<10} "
          f"{'img sha256':<12} {'img src':<12} {'node':<13} {'log hidden':<10} screenshot")
    for s in report["samples"]:
        print(f"{s['t']:>6}  {s['phase']:<8} {s['prompt'] or '-':<7} {s['n_outputs']:>7}  {str(s['widget']):<6} "
              f"{s['progress'] or '-':<10} {s['img_hash'] or '-':<12} {short(s['img_src']):<12} "
              f"{s['first_output_id'] or '-':<13} {(s['log'] or {}).get('hidden_below', '-'):<10} "
              f"{Path(s['screenshot']).name if s.get('screenshot') else ''}")
    f = report.get("final", {})
    print(f"after close: outputs={f.get('n_outputs')} mime={f.get('mime_types')} widget={f.get('widget')} "
          f"stderr={f.get('stderr')}")
    for text in f.get("texts", [])[1:]:
        print(f"  stdout: {text.strip()}")
    print(f"observer: {report.get('observer')}")
    print(f"saved notebook outputs: {report.get('saved_outputs')}")
    print(f"controls: {json.dumps(report.get('controls'))}")
    if "click" in report:
        print(f"after Train ({report['click']['seconds']} s): panel={report['click']['panel']}\n"
              f"{report['click']['text']}")
    if report["console_errors"]:
        print("browser console errors:", *report["console_errors"], sep="\n  ")
    for warning in report["warnings"]:
        print("WARNING:", warning)
    print("RESULT:", "FAIL\n  " + "\n  ".join(report["failures"]) if report["failures"] else "OK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/browser_check"), help="screenshots and report.json")
    parser.add_argument("--venv", type=Path, default=REPO / ".venv", help="venv with jupyterlab and bnlab")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--no-click", dest="click", action="store_false", help="do not click Train")
    parser.add_argument("--headed", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary Jupyter root")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    out = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    root = Path(tempfile.mkdtemp(prefix="bnlab-browser-check-"))
    write_notebook(root / "check.ipynb")
    try:
        with jupyter_lab(args.venv, root, out / "jupyter.log") as base, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, headless=not args.headed, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(60_000)
                report = check(page, base, out, root, args.click)
            finally:
                browser.close()
    except Exception as exc:
        print(f"browser check could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print_report(report)
    print(f"screenshots and report.json in {out}")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
