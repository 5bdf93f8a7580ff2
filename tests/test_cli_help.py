"""`--version` and `-h`: the app and every command, subcommands included."""

from __future__ import annotations

from typing import Any

import pytest
import typer.main
from cli import assert_refused, in_process, nasctl
from typer.testing import CliRunner

from nasctl import __version__
from nasctl.cli import app


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*prefix, name))
        if hasattr(command, "commands"):  # a group (typer bundles its own click)
            found += _commands(command, (*prefix, name))
    return found


COMMANDS = _commands(typer.main.get_group(app))


def test_version() -> None:
    proc = nasctl("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"nasctl {__version__}"
    assert proc.stderr == ""


def test_every_command_is_covered() -> None:
    assert {"pipeline", "search", "train", "export"} <= {c[0] for c in COMMANDS}
    assert ("genotypes", "show") in COMMANDS


@pytest.mark.parametrize("command", [(), *COMMANDS], ids=lambda c: " ".join(c) or "app")
def test_short_help(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*command, "-h"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ") and "-h, --help" in result.output
    assert result.output == CliRunner().invoke(app, [*command, "--help"]).output


@pytest.mark.parametrize(("args", "needle"), [
    (["export", "DARTS_V2", "--bogus"], "No such option: --bogus"),
    (["export", "DARTS_V2"], "Missing option '-o' / '--out'"),
    (["bench", "x.onnx", "--runs", "many"], "Invalid value for '--runs'"),
    (["search", "--nope"], "No such option: --nope"),
    (["nope"], "No such command 'nope'"),
], ids=["unknown-option", "missing-out", "bad-int", "search-unknown-option", "no-command"])
def test_usage_errors_are_one_line_naming_the_help(args: list[str], needle: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    command = " ".join(["nasctl", *[a for a in args[:1] if a != "nope"]])
    assert_refused(in_process(capsys, *args), needle, f"see {command} --help")
