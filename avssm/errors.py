"""User-facing errors: the CLI prints their message on one line and exits with their code, no traceback.

Exit codes: 0 success; 2 bad input found before any work (AvssmError); 1 a fault during the work
(FaultError: camera lost, write failure), after the partial report; 130 Ctrl-C; 143 SIGTERM.
"""


class AvssmError(Exception):
    """A problem with the user's input (model name, file, shape, flag), not a bug in avssm."""

    exit_code = 2


class FaultError(AvssmError):
    """A fault during the work (a write that failed, a source that broke): exit 1."""

    exit_code = 1


class UnknownModelError(AvssmError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class CheckpointError(AvssmError):
    pass


class Terminated(KeyboardInterrupt):
    """SIGTERM (systemd, `docker stop`, ROS launch), raised by the CLI's handler so that it takes Ctrl-C's path:
    the partial report, temporary files removed, then exit 143 instead of 130."""
