"""``amiflow accounts import|list|show`` on a real PostgreSQL: contacts and e-bill opt-ins imported like meters (a bad
row is one line naming it and nothing is imported), updated by a new import (a changed e-mail clears its bounce)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from amiflow.db.accounts import get_contact
from amiflow_app.cli import main

GOOD = (
    "account,name,email,ebill,address\n"
    'ACC-1,Jane Doe,jane@example.com,yes,"12 Main Street\nSpringfield"\n'
    "ACC-2,Bob Roe,,no,4 Elm Road;Shelbyville\n"
)


@pytest.fixture
def cli_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AMIFLOW_DATABASE_URL", db_url)
    return db_url


def test_import_list_show(
    cli_db: str, db_conn: psycopg.Connection[Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text(GOOD)
    assert main(["accounts", "import", str(path)]) == 0
    jane = get_contact(db_conn, "ACC-1")
    assert jane is not None and jane.address == ("12 Main Street", "Springfield") and jane.can_receive_ebill
    bob = get_contact(db_conn, "ACC-2")
    assert bob is not None and bob.email is None and bob.address == ("4 Elm Road", "Shelbyville") and not bob.ebill
    capsys.readouterr()
    assert main(["accounts", "list"]) == 0
    out = capsys.readouterr().out
    assert "ACC-1" in out and "jane@example.com" in out and "2 account(s)" in out
    assert main(["accounts", "show", "ACC-1"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["contact"]["email"] == "jane@example.com" and shown["ebills"] == []
    assert main(["accounts", "show", "NOPE"]) == 2
    assert (
        capsys.readouterr().err.strip() == "amiflow accounts show: unknown account 'NOPE' (see 'amiflow accounts list')"
    )

    db_conn.execute("UPDATE amiflow.account_contacts SET email_status = 'bounced', bounce_reason = 'bounce: 550'")
    path.write_text(GOOD.replace("jane@example.com", "jane.doe@example.com"))
    assert main(["accounts", "import", str(path)]) == 0
    jane = get_contact(db_conn, "ACC-1")
    assert jane is not None and jane.email_status == "ok" and jane.bounce_reason is None  # a new address
    bob = get_contact(db_conn, "ACC-2")
    assert bob is not None and bob.email_status == "bounced"  # unchanged address: its status stays


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("account,name,email\nA,B,c@d.example\n", "the header lacks ebill"),
        (GOOD + "ACC-3,Al,not-an-address,no,\n", "line 5: account ACC-3: 'not-an-address' is not an e-mail address"),
        (GOOD + "ACC-3,Al,,yes,\n", "line 5: account ACC-3: e-bill opt-in needs an e-mail address"),
        (GOOD + "ACC-3,Al,a@b.example,perhaps,\n", "line 5: ebill 'perhaps' is not yes or no"),
        (GOOD + "ACC-1,Jane,j@example.com,no,\n", "line 5: account ACC-1 appears twice"),
        (GOOD + 'ACC-3,"Al\x00",a@b.example,no,\n', "line 5: account ACC-3: a NUL character"),
        (GOOD + f'ACC-3,"{"x" * 200_000}",a@b.example,no,\n', "line 5: not readable as CSV"),
    ],
)
def test_a_bad_row_is_named_and_nothing_is_imported(
    cli_db: str,
    db_conn: psycopg.Connection[Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    message: str,
) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text(text)
    assert main(["accounts", "import", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    row = db_conn.execute("SELECT count(*) FROM amiflow.account_contacts").fetchone()
    assert row == (0,)
