"""JupyterHub configuration of the course's local hub (`make hub`; docs/jupyterhub.md).

JupyterHub runs in the hub's state folder, which `python -m bnlab.instructor.hub prepare` fills
(accounts, exchange, student environment, hub.json); bnlab.instructor.hub.configure sets everything.
"""

from pathlib import Path

from bnlab.instructor import hub

c = get_config()  # noqa: F821 - provided by JupyterHub

hub.configure(c, Path.cwd())
