"""The `nasctl` command line. Thin: parse options, call the library, format the result.

Each area registers its commands from its own module here, so adding a command never
touches another area's file.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer._click.exceptions import NoArgsIsHelpError  # typer vendors click as typer._click

from nasctl.errors import NasctlError, RunInterrupted

INTERRUPTED = 130  # Ctrl-C, or SIGTERM where a command writes (nasctl.runs)


class _App(typer.Typer):
    """A Typer app that turns library errors and usage errors into one line on stderr and
    exit code 2, and an interruption into one line and exit code 130."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            code = super().__call__(*args, standalone_mode=False, **kwargs)
        except RunInterrupted as exc:  # before NasctlError: its own exit code
            print(f"nasctl: {exc}", file=sys.stderr)
            sys.exit(INTERRUPTED)
        except NasctlError as exc:
            print(f"nasctl: error: {exc}", file=sys.stderr)
            sys.exit(2)
        except OSError as exc:  # permissions, a full disk, a vanished folder: not a bug
            print(f"nasctl: error: {exc}", file=sys.stderr)
            sys.exit(2)
        except NoArgsIsHelpError as exc:  # `nasctl weights`: the help
            exc.show()
            sys.exit(exc.exit_code)
        except typer.TyperException as exc:  # an unknown option, a missing --out, ...
            ctx = getattr(exc, "ctx", None)
            where = f"; see {ctx.command_path} --help" if ctx is not None else ""
            print(f"nasctl: error: {exc.format_message().rstrip('.')}{where}",
                  file=sys.stderr)
            sys.exit(exc.exit_code)
        except (typer.Abort, KeyboardInterrupt):
            code = INTERRUPTED
        if code == INTERRUPTED:  # Typer turns KeyboardInterrupt into this exit code
            print("nasctl: interrupted", file=sys.stderr)
        sys.exit(code if isinstance(code, int) else 0)


app = _App(
    name="nasctl",
    help="Differentiable NAS (FairDARTS, iDARTS, DARTS) from search to a validated engine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # subcommands inherit it
)


def _print_version(value: bool) -> None:
    if value:
        from nasctl import __version__

        print(f"nasctl {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    """Differentiable NAS (FairDARTS, iDARTS, DARTS) from search to a validated engine."""

from nasctl.cli import export as _export  # noqa: E402
from nasctl.cli import genotypes as _genotypes  # noqa: E402
from nasctl.cli import latency as _latency  # noqa: E402
from nasctl.cli import pipeline as _pipeline  # noqa: E402
from nasctl.cli import search as _search  # noqa: E402
from nasctl.cli import train as _train  # noqa: E402
from nasctl.cli import validate as _validate  # noqa: E402
from nasctl.cli import weights as _weights  # noqa: E402

for _module in (_pipeline, _search, _train, _export, _validate, _genotypes, _weights,
                _latency):
    _module.register(app)
