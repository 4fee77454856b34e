"""The Typer app and what every command shares: errors as one line, logging, the progress bar."""

from __future__ import annotations

import functools
import logging
import os
import sys
import traceback
from collections.abc import Callable

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .. import __version__
from ..errors import StreamsegError

app = typer.Typer(
    name="streamseg",
    help="Instance segmentation, tracking and counting for video files and live streams.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
DEBUG_ENV = "STREAMSEG_DEBUG"


def _fail(message: str, code: int) -> None:
    if os.environ.get(DEBUG_ENV):
        traceback.print_exc()
    print(f"streamseg: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def reported(command: Callable) -> Callable:
    """Map streamseg's errors to one line on stderr and an exit code (2 usage/input, 1 runtime, 130 Ctrl-C)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except StreamsegError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the edge of the program: one line, trace with --debug
            _fail(f"unexpected {exc.__class__.__name__}: {exc} (run with --debug for the trace)", 1)

    return wrapper


def _version(value: bool) -> None:
    if value:
        print(f"streamseg {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: bool = typer.Option(False, "--debug", help="Show the full trace of an error."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Instance segmentation, tracking and counting for video files and live streams."""
    if debug:
        os.environ[DEBUG_ENV] = "1"
    # Library warnings (a stream lost and found again) go to stderr beside the progress bar.
    logger = logging.getLogger("streamseg")
    if not logger.handlers:
        logger.addHandler(RichHandler(console=console, show_path=False, show_time=True))
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)
    # The runtime's one-line notice of a first export (seconds, once) is for a person waiting at a terminal;
    # scripts and services get its warnings only, and their stderr stays errors and warnings.
    notices = logging.INFO if console.is_terminal else logging.WARNING
    logging.getLogger("streamseg.runtimes").setLevel(logging.DEBUG if debug else notices)


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )
