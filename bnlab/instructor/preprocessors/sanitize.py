"""A submission is data: no script of it runs in the instructor's browser, and no output of it is huge.

The autograded notebook is what the formgrader renders (nbconvert's HTML, on the Jupyter server's
origin, with no sanitizing), what the feedback is made from, and what JupyterLab opens (where *Trust*
would run its outputs). So :class:`SanitizeSubmission`, the last of ``Autograde.autograde_preprocessors``
(and run again before the feedback is rendered), makes the notebook itself inert:

- HTML in markdown cells, raw cells and ``text/html`` / ``text/markdown`` outputs keeps only
  formatting tags (no ``<script>``, ``<style>``, ``<iframe>``, no ``on...=`` attribute, no
  ``javascript:`` link); markdown links and images keep only http(s), mailto, relative and
  ``attachment:`` targets;
- outputs that are code or can carry it (JavaScript, SVG, HTML-producing widgets' state) are removed,
  with a note in their place;
- every text of an output is capped at ``max_output_bytes``, and the outputs of the notebook at
  ``max_notebook_bytes`` in all, with a note where something was cut (an error output and a stream's
  name, which decide a test cell's score, are never removed);
- the notebook's signature and widget state are dropped;
- a file submitted beside the notebook that a browser would run (``.html``, ``.svg``, ``.js``, ...) is
  renamed ``<name>.txt`` in ``autograded/``, so the formgrader serves it as plain text.

Grades are saved before this runs (it is last in the chain), and it changes no output's type, so they are
the same as without it. What it removed is logged for the instructor.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

import bleach
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import GetGrades
from nbgrader.preprocessors.base import NbGraderPreprocessor
from traitlets import Integer, List

TAGS = frozenset(
    "a abbr b blockquote br caption cite code col colgroup dd del details div dl dt em figcaption figure h1 h2 h3 "
    "h4 h5 h6 hr i img ins kbd li mark ol p pre q s samp small span strong sub summary sup table tbody td tfoot th "
    "thead tr u ul".split()
)
ATTRIBUTES = {"a": ("href", "title"), "img": ("src", "alt", "title", "width", "height"), "*": ("class", "align")}
PROTOCOLS = frozenset({"http", "https", "mailto", "attachment"})
# output types that are code, or that a renderer turns into live markup
DROPPED_MIMES = ("javascript", "image/svg+xml", "application/vnd.jupyter.widget-state")
TEXT_MIMES = ("text/plain", "text/latex", "application/json")
CODE_BLOCK = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.S | re.I)  # their text is code: dropped too
TAG_LIKE = re.compile(r"<\s*[A-Za-z!/?]")
# markdown link and image targets: [text](target ...), [ref]: target, <scheme:...>
MD_TARGET = re.compile(r"(\]\(\s*<?|^\s{0,3}\[[^\]]+\]:\s*<?|<)([^\s)>]+)", re.MULTILINE)
TEX_TARGET = re.compile(r"(\\(?:href|url)\s*\{)([^}]*)")  # MathJax's \href{target}{text} and \url{target}
SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")
# submitted files a browser would render or run when the formgrader serves them
ACTIVE_SUFFIXES = frozenset(
    ".html .htm .xhtml .xht .shtml .svg .svgz .xml .xsl .xslt .js .mjs .css .swf .pdf .mht .mhtml .hta .wasm".split()
)


def cut_note(removed: int, what: str = "bytes") -> str:
    return f"\n[... {removed:,} {what} of this output were cut by the course's grader (output size limit) ...]\n"


def _allowed_attribute(tag: str, name: str, value: str) -> bool:
    if name not in ATTRIBUTES.get(tag, ()) and name not in ATTRIBUTES["*"]:
        return False
    return name not in ("href", "src") or safe_target(value)


def _clean_html(text: str) -> str:
    cleaner = bleach.Cleaner(
        tags=TAGS, attributes=_allowed_attribute, protocols=PROTOCOLS, strip=True, strip_comments=True
    )
    return cleaner.clean(text)


def safe_target(target: str) -> bool:
    """Whether a link or image target may stay: relative, ``#``, http(s), mailto or a cell attachment."""
    plain = re.sub(r"[\x00-\x20]", "", html.unescape(target)).lower()
    scheme = SCHEME.match(plain)
    return scheme is None or scheme.group(1) in PROTOCOLS


def clean_markup(text: str) -> str:
    """Markdown (or HTML) with only formatting HTML and only safe link targets. Text without anything
    tag-like is returned as it is, so ``a < b`` in an answer stays as the student wrote it."""
    if not isinstance(text, str):
        return text
    if TAG_LIKE.search(text):
        cleaned = _clean_html(CODE_BLOCK.sub("", text))
        if html.unescape(cleaned) != html.unescape(text):
            text = cleaned  # something was removed, not only escaped
    for pattern in (MD_TARGET, TEX_TARGET):
        text = pattern.sub(lambda m: m.group(0) if safe_target(m.group(2)) else m.group(1) + "#removed-link", text)
    return text


def _cap(text: str, limit: int) -> tuple[str, int]:
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text, 0
    return data[:limit].decode("utf-8", "ignore") + cut_note(len(data) - limit), len(data) - limit


def _text_size(output) -> int:
    size = 0
    for value in (output.get("text"), output.get("evalue"), *output.get("traceback", [])):
        if isinstance(value, str):
            size += len(value.encode("utf-8", "replace"))
    for value in output.get("data", {}).values():
        size += len(value.encode("utf-8", "replace")) if isinstance(value, str) else len(str(value))
    return size


class SanitizeSubmission(NbGraderPreprocessor):
    """Make a graded notebook inert and bounded (module docstring); configured in ``nbgrader_config.py``."""

    # configurable as nbconvert's HTMLExporter expects of every preprocessor (see feedback.HideHiddenTests)
    display_data_priority = List(GetGrades.display_data_priority.default_value).tag(config=True)

    max_output_bytes = Integer(100_000, help="Bytes kept of each text of an output (stream, HTML, traceback...).").tag(
        config=True
    )
    max_image_bytes = Integer(2_000_000, help="Largest image output kept (base64 bytes).").tag(config=True)
    max_notebook_bytes = Integer(
        5_000_000, help="Bytes of outputs kept in a whole notebook; later outputs are replaced by a note."
    ).tag(config=True)

    def preprocess(self, nb, resources):
        self._removed: list[str] = []
        self._budget = self.max_notebook_bytes
        for key in ("signature", "widgets"):
            if nb.metadata.pop(key, None) is not None:
                self._removed.append(f"notebook {key}")
        nb, resources = super().preprocess(nb, resources)
        self._inert_files(resources)
        if self._removed:
            info = resources.get("nbgrader", {})
            self.log.warning(
                "SANITIZED: student %s, %s: %s",
                info.get("student", "?"),
                info.get("notebook", "?"),
                "; ".join(sorted(set(self._removed))[:12]),
            )
        return nb, resources

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type in ("markdown", "raw"):
            cleaned = clean_markup(cell.source)
            if cleaned != cell.source:
                self._removed.append(f"markup in {cell.cell_type} cell {index}")
                cell.source = cleaned
            if cell.cell_type == "raw":  # a raw cell is shown as text, never as HTML
                cell.metadata.pop("format", None)
                cell.metadata.pop("raw_mimetype", None)
        elif cell.cell_type == "code":
            cell.outputs = [self._output(out, index) for out in cell.get("outputs", [])]
        return cell, resources

    def _output(self, output, index: int):
        kind = output.get("output_type")
        if kind == "stream":
            output["text"] = self._text(output.get("text", ""), index)
        elif kind == "error":
            output["evalue"] = self._text(str(output.get("evalue", "")), index)
            kept, budget = [], self.max_output_bytes
            for line in output.get("traceback", []):
                if budget <= 0:
                    kept.append(cut_note(len(output["traceback"]) - len(kept), "traceback lines"))
                    self._removed.append(f"traceback lines in cell {index}")
                    break
                line, _ = _cap(line, budget)
                budget -= len(line)
                kept.append(line)
            output["traceback"] = kept
        elif kind in ("display_data", "execute_result"):
            self._data(output, index)
        return output

    def _text(self, text, index: int) -> str:
        text = "".join(text) if isinstance(text, list) else str(text)
        limit = min(self.max_output_bytes, max(self._budget, 200))
        text, cut = _cap(text, limit)
        if cut:
            self._removed.append(f"{cut:,} bytes of output in cell {index}")
        self._budget -= len(text)
        return text

    def _data(self, output, index: int) -> None:
        data = output.get("data", {})
        for mime in list(data):
            value = data[mime]
            if any(bad in mime for bad in DROPPED_MIMES):
                del data[mime]
                self._removed.append(f"{mime} output in cell {index}")
            elif mime in ("text/html", "text/markdown"):
                cleaned = self._text(clean_markup(value if isinstance(value, str) else "".join(value)), index)
                if cleaned != value:
                    self._removed.append(f"markup in {mime} output of cell {index}")
                data[mime] = clean_markup(cleaned)  # a cut can leave half a tag
            elif mime.startswith("image/"):
                size = len(value) if isinstance(value, str) else len(str(value))
                if size > min(self.max_image_bytes, self._budget):
                    del data[mime]
                    self._removed.append(f"{size:,}-byte image in cell {index}")
                else:
                    self._budget -= size
            elif mime in TEXT_MIMES and isinstance(value, str):
                data[mime] = self._text(clean_markup(value) if mime == "text/latex" else value, index)
            elif mime.endswith("+json") or mime == "application/json":
                if _text_size({"data": {mime: value}}) > self.max_output_bytes:
                    del data[mime]
                    self._removed.append(f"large {mime} output in cell {index}")
            else:  # anything else a renderer might interpret
                del data[mime]
                self._removed.append(f"{mime} output in cell {index}")
        if not data:
            data["text/plain"] = "(an output of the submission was removed by the course's grader: see the log)"

    def _inert_files(self, resources) -> None:
        """Rename the submitted files in ``autograded/`` that a browser would run (not the master's files)."""
        info = resources.get("nbgrader", {})
        if not info.get("student") or not info.get("assignment"):
            return
        coursedir = CourseDirectory(config=self.config)
        dest = Path(coursedir.format_path(coursedir.autograded_directory, info["student"], info["assignment"]))
        source = Path(coursedir.format_path(coursedir.source_directory, ".", info["assignment"]))
        if not dest.is_dir():
            return
        for path in sorted(dest.rglob("*")):
            if path.is_symlink() or not path.is_file() or path.suffix.lower() not in ACTIVE_SUFFIXES:
                continue
            relative = path.relative_to(dest)
            if (source / relative).exists():
                continue  # the instructor's own file, copied from source/
            target = path.with_name(path.name + ".txt")
            os.replace(path, target)
            self._removed.append(f"submitted file {relative} renamed {target.name}")
