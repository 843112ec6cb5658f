"""The course's nbgrader preprocessors, named in ``nbgrader_config.py``: the sandboxed kernel
(``execute``), the trusted re-run of the checks (``verify``, with its worker session in ``remote``),
restoring and flagging (``review``), the feedback's hidden-test filter (``feedback``) and the
graded notebook made inert and bounded for the instructor's browser (``sanitize``)."""
