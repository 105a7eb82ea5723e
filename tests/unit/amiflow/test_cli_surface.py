"""The command surface: every command imports and has a description, ``--help`` lists them all, and every
``amiflow ...`` command the README and docs/ show exists (a doc naming a command that does not is a bug)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from amiflow_app.cli import COMMANDS, ENTRIES, GROUPS, _load, main

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "deploy").glob("*.md"))]
# `amiflow word [word]` inside inline code or a fenced block; prose ("amiflow reads ...") is not a command.
_INLINE = re.compile(r"`(?:\.venv/bin/)?amiflow ([a-z][a-z0-9-]*)(?: ([a-z][a-z0-9-]*))?")
_FENCED_LINE = re.compile(r"^\s*(?:\$ )?(?:\S*/)?amiflow ([a-z][a-z0-9-]*)(?: ([a-z][a-z0-9-]*))?")


def _documented() -> list[tuple[str, str, tuple[str, ...]]]:
    found = []
    for path in DOCS:
        fenced = False
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            matches = [_FENCED_LINE.match(line)] if fenced else list(_INLINE.finditer(line))
            for m in matches:
                if m is not None:
                    found.append((path.name, str(number), tuple(w for w in m.groups() if w)))
    return found


def _resolve(words: tuple[str, ...]) -> tuple[str, ...] | None:
    """The command (or command group) the documented words name, or None when it does not exist."""
    for key in (words[:2], words[:1]):
        if key in COMMANDS:
            return key
    return words if len(words) == 1 and words[0] in GROUPS else None


def test_the_docs_show_commands() -> None:
    assert len(_documented()) > 20  # the extraction itself works


@pytest.mark.parametrize("words", sorted(COMMANDS), ids=" ".join)
def test_every_command_loads_with_a_description(words: tuple[str, ...]) -> None:
    command = _load(COMMANDS[words])
    assert command is not None, f"{COMMANDS[words]} is not a Command"
    assert command.help.strip(), f"amiflow {' '.join(words)} has no description"
    assert ENTRIES[words][1], "no summary line"


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for words, (_, summary, _) in ENTRIES.items():
        assert " ".join(words) in out and summary in out


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_group_help_lists_its_subcommands(group: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([group, "--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps long summaries
    for words, (_, summary, _) in ENTRIES.items():
        if words[0] == group:
            assert words[1] in out and summary in out


def test_documented_commands_run_with_help(capsys: pytest.CaptureFixture[str]) -> None:
    for words in sorted({w for _, _, doc in _documented() if (w := _resolve(doc)) is not None}):
        with pytest.raises(SystemExit) as exit_info:
            main([*words, "--help"])
        assert exit_info.value.code == 0, f"amiflow {' '.join(words)} --help"
        assert "usage: amiflow" in capsys.readouterr().out


def test_documented_commands_exist() -> None:
    missing = [
        f"{name}:{line}: amiflow {' '.join(words)}" for name, line, words in _documented() if _resolve(words) is None
    ]
    assert not missing, "docs name commands that do not exist:\n  " + "\n  ".join(missing)
