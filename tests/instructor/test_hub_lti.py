"""The Canvas login of docs/jupyterhub.md (jupyterhub-ltiauthenticator 1.6, LTI 1.3), as far as one machine
without Canvas can take it: the documented configuration loads into the authenticator, and an id token from
Canvas gives the hub name the exports expect (the Canvas login, i.e. the SIS Login ID column).

Not tested (the page says so): a signed launch from a platform, the JWKS fetch, user creation on first login.
"""

from __future__ import annotations

import re

import pytest
from traitlets.config import Config

from bnlab.instructor import exports
from bnlab.instructor.notebooks import ROOT

lti13 = pytest.importorskip("ltiauthenticator.lti13.auth", reason="the hub extra: pip install -e '.[hub]'")
CUSTOM = "https://purl.imsglobal.org/spec/lti/claim/custom"


def documented_config() -> Config:
    """The Python block of the page's Canvas section, run on a fresh Config as JupyterHub runs its config."""
    page = (ROOT / "docs" / "jupyterhub.md").read_text()
    section = page[page.index("## Logging in from Canvas") :]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    c = Config()
    exec(block, {"c": c})
    return c


def test_the_documented_lti13_configuration_names_users_by_their_canvas_login():
    c = documented_config()
    assert c.JupyterHub.authenticator_class == "ltiauthenticator.lti13.auth.LTI13Authenticator"
    authenticator = lti13.LTI13Authenticator(config=c)
    assert authenticator.issuer == "https://canvas.instructure.com"
    assert authenticator.client_id == {"10000000000001"}
    token = {"sub": "a1b2c3-opaque", "email": "jdoe@example.edu", CUSTOM: {"canvas_login": "jdoe"}}
    name = authenticator.get_username(token)
    assert name == "jdoe"
    assert exports.canvas_ids(name) == ["", "", "jdoe"], "the hub name must land in Canvas' SIS Login ID"


def test_without_the_custom_field_the_login_falls_back_to_canvas_opaque_id():
    """A Developer Key without the custom field: the authenticator takes ``sub`` (and logs it), which is
    not the SIS login: the page's custom field is required for the export to match."""
    authenticator = lti13.LTI13Authenticator(config=documented_config())
    assert authenticator.get_username({"sub": "a1b2c3-opaque"}) == "a1b2c3-opaque"
