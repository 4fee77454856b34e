"""The few exception types streamseg raises on purpose.

The CLI maps each to one line on stderr and an exit code; library users catch them by type.
"""


class StreamsegError(Exception):
    """Base class: something the user can act on, reported without a traceback."""

    exit_code = 1


class InputError(StreamsegError):
    """Bad usage or input: a missing or undecodable source, a bad option or config file."""

    exit_code = 2


class ModelError(StreamsegError):
    """A model that cannot be built or loaded: unknown name, foreign checkpoint, missing weights."""

    exit_code = 2


class OutputError(StreamsegError):
    """Outputs cannot be written: unwritable directory, existing run, full disk."""

    exit_code = 2


class PipelineError(StreamsegError):
    """A stage failed while the pipeline was running."""

    exit_code = 1


def one_line(error: BaseException) -> str:
    """An error as one line for a message: an OS error's own words (no errno, no file name), else its
    text, else its type's name (an exception raised with no message)."""
    return getattr(error, "strerror", None) or str(error) or error.__class__.__name__


def ending_reason(error: BaseException | None) -> str | None:
    """Why a run ended early, for ``summary.json``'s ``reason``: None when it did not."""
    if error is None:
        return None
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    if isinstance(error, GeneratorExit):
        return "stopped by the caller before the end of the source"
    return str(error) or error.__class__.__name__
