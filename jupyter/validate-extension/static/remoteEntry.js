// Batch Normalization in TensorFlow: what nbgrader's Validate dialog says on success.
//
// nbgrader's dialog says "Success! Your notebook passes all the tests." whenever no visible check fails.
// In this course the answers to the questions are only checked for their form in the notebook: whether
// they are right is graded after submission. This plugin rewrites that sentence to say so, naming those
// answers by the rule `nbgrader validate` uses on the command line (bnlab.exercise.graded_after_submission):
// a graded cell that calls check_choice or check_number on an ANSWER_ variable, and a graded written answer.
//
// Written by hand, no build step: a JupyterLab 4 prebuilt extension is a script that registers a container
// with `get` and `init` under its package name (module federation); `get("./extension")` returns a factory
// for a module whose default export is the plugin. It uses no JupyterLab package, only the DOM and the app.
var _JUPYTERLAB;
(function () {
  "use strict";

  var CHOICE_CHECK = /\bcheck_(?:choice|number)\(\s*(ANSWER_\w+)/g;

  function cellsOf(widget) {
    // the notebook in the main area when Validate was pressed: its toolbar's button validates it
    var model = widget && widget.context && widget.context.model;
    if (!model || typeof model.toJSON !== "function") return null;
    var notebook = model.toJSON();
    return notebook && Array.isArray(notebook.cells) ? notebook.cells : null;
  }

  function source(cell) {
    return Array.isArray(cell.source) ? cell.source.join("") : String(cell.source || "");
  }

  function points(n) {
    return n === 1 ? "1 point" : n + " points";
  }

  function gradedLater(cells) {
    var answers = [], written = [];
    cells.forEach(function (cell) {
      var nbgrader = (cell.metadata && cell.metadata.nbgrader) || {};
      if (!nbgrader.grade) return;
      var worth = Number(nbgrader.points || 0);
      if (cell.cell_type === "markdown") {
        written.push(worth);
        return;
      }
      var text = source(cell), match;
      CHOICE_CHECK.lastIndex = 0;
      while ((match = CHOICE_CHECK.exec(text)) !== null) answers.push(match[1] + " (" + points(worth) + ")");
    });
    return { answers: answers, written: written };
  }

  function paragraph(text) {
    var p = document.createElement("p");
    p.textContent = text;
    return p;
  }

  function rewrite(node, app) {
    node.setAttribute("data-bnlab-rewritten", "");
    var cells = cellsOf(app.shell.currentWidget);
    var later = cells ? gradedLater(cells) : null;
    if (later && !later.answers.length && !later.written.length) return; // every check ran: nbgrader's word stands
    var parts = [paragraph("No check in this notebook failed.")];
    if (later && later.answers.length) {
      parts.push(paragraph(
        "These answers are checked here only for their form (an option, a number). " +
        "Whether they are right is graded after you submit:"
      ));
      var list = document.createElement("ul");
      later.answers.forEach(function (answer) {
        var item = document.createElement("li");
        item.textContent = answer;
        list.append(item);
      });
      parts.push(list);
    } else if (!later) {
      parts.push(paragraph(
        "The answers to the questions are checked here only for their form: whether they are right is " +
        "graded after you submit, as their check cells say."
      ));
    }
    if (later && later.written.length) {
      parts.push(paragraph(
        later.written.length === 1
          ? "Your written answer (" + points(later.written[0]) + ") is graded by hand after you submit."
          : "Your " + later.written.length + " written answers are graded by hand after you submit."
      ));
    }
    node.replaceChildren.apply(node, parts);
  }

  var plugin = {
    id: "bnlab-validate:success-message",
    description: "Validate says which answers are graded only after submission.",
    autoStart: true,
    activate: function (app) {
      new MutationObserver(function () {
        var node = document.getElementById("validation-message");
        if (node && node.classList.contains("validation-success") && !node.hasAttribute("data-bnlab-rewritten")) {
          rewrite(node, app);
        }
      }).observe(document.body, { childList: true, subtree: true });
    },
  };

  _JUPYTERLAB = _JUPYTERLAB || {};
  _JUPYTERLAB["bnlab-validate"] = {
    init: function () {}, // shares no module with JupyterLab
    get: function (module) {
      if (module !== "./extension") return Promise.reject(new Error("bnlab-validate has no module " + module));
      return Promise.resolve(function () {
        return { __esModule: true, default: plugin };
      });
    },
  };
})();
