"""User-facing errors: the CLI prints their message on one line and exits non-zero, no traceback."""


class AvssmError(Exception):
    """A problem with the user's input (model name, file, shape), not a bug in avssm."""

    exit_code = 2


class UnknownModelError(AvssmError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class CheckpointError(AvssmError):
    pass
