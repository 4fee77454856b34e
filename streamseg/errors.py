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
