"""Identity at the exchange (bnlab.instructor.identity, run by `make collect`): a submission counts for the
Unix user who wrote it, never for the student id it claims.

nbgrader's ``submit --student ID`` lets anyone claim any id; on the course's hub (docs/jupyterhub.md) each
hub name is a Unix user, and only the kernel sets who owns a folder. The tests give folders away with
``chown`` (as the kernel does when a student writes them), so they need root; CI runs as root. The whole
route through a real hub is in tests/browser/test_hub.py.
"""

from __future__ import annotations

import getpass
import os
import pwd
import stat

import pytest
import test_lms_collect as collecting

from bnlab.instructor import identity, lms

A, NB = collecting.A, collecting.NB
hand_in, notebook, submitted = collecting.hand_in, collecting.notebook, collecting.submitted
course, exchange = collecting.course, collecting.exchange  # the fixtures: a small course, a scratch exchange

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user (chown) needs root")

# Two accounts every Debian system has, standing in for two students' hub accounts.
ALICE, BOB = "daemon", "bin"
NO_ACCOUNT = 54321  # a uid without an account


def give(folder, user: str | int) -> None:
    """``folder`` and its files as if ``user`` had written them (nbgrader's submit leaves the folder 777)."""
    uid = user if isinstance(user, int) else pwd.getpwnam(user).pw_uid
    for path in [folder, *folder.iterdir()]:
        os.chown(path, uid, uid)
    os.chmod(folder, 0o777)


def test_the_claimed_id_is_read_as_nbgrader_reads_it():
    assert identity.claimed_id(f"jane+{A}+2026-12-01 10:00:00.000000 UTC+abc123") == "jane"
    assert identity.claimed_id(f"jane+{A}+2026-12-01 10:00:00.000000 UTC") == "jane"
    assert identity.claimed_id(f"a+b+{A}+2026-12-01 10:00:00.000000 UTC+abc") == "a+b"


def test_an_honest_submission_is_collected_and_one_under_another_id_is_refused(course, exchange, capsys):
    """B's own submission counts; A's later one claiming B's id is moved aside and reported, so B keeps
    what B handed in (without the check nbgrader takes the latest, A's, as B's)."""
    give(hand_in(exchange, BOB, "2026-12-01 10:00:00.000000 UTC", {NB: notebook("bob's own")}), BOB)
    give(hand_in(exchange, ALICE, "2026-12-01 10:05:00.000000 UTC", {NB: notebook("alice's own")}), ALICE)
    forged = hand_in(exchange, BOB, "2026-12-01 11:00:00.000000 UTC+zz", {NB: notebook("alice, as bob")})
    give(forged, ALICE)
    assert lms.main(["collect", A, "--course", str(course)]) == 0
    out = capsys.readouterr().out
    assert submitted(course, BOB) == notebook("bob's own")
    assert submitted(course, ALICE) == notebook("alice's own")
    assert f"claims student '{BOB}' but was submitted by '{ALICE}'" in out
    refused = exchange / "batchnorm" / identity.REFUSED
    assert [p.name for p in refused.iterdir()] == [f"{forged.name}+owner={ALICE}"]
    assert stat.S_IMODE(refused.stat().st_mode) == 0o700, "refused/ must be private to the course's owner"
    assert not forged.exists()
    assert lms.main(["collect", A, "--course", str(course)]) == 0  # again: nothing new is refused
    assert "refused" not in capsys.readouterr().out


def test_a_submission_of_a_uid_without_account_is_refused(exchange):
    folder = hand_in(exchange, BOB, "2026-12-01 10:00:00.000000 UTC", {NB: notebook("?")})
    give(folder, NO_ACCOUNT)
    found = identity.forged(exchange / "batchnorm" / "inbound", A)
    assert found == [identity.Forged(folder.name, BOB, f"uid {NO_ACCOUNT}")]


def test_folders_of_the_collecting_account_pass(exchange):
    """One Unix account for everyone (a lone instructor, a hub without real users): ownership tells nothing,
    and only root can give a folder to the collector, so such folders pass as nbgrader would take them."""
    hand_in(exchange, "someone", "2026-12-01 10:00:00.000000 UTC", {NB: notebook("x")})
    assert identity.forged(exchange / "batchnorm" / "inbound", A, collector=getpass.getuser()) == []
    assert [f.owner for f in identity.forged(exchange / "batchnorm" / "inbound", A, collector=BOB)] == ["root"]


def test_nothing_to_refuse_without_an_inbound_folder(tmp_path):
    assert identity.refuse_forged(tmp_path / "no-course", A) == []
