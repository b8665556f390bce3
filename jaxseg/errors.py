"""Errors for user mistakes: the command-line tools print them as one line and exit 2."""


class JaxsegError(Exception):
    """A problem with the user's input (files, data, configuration), not a bug."""


class DataError(JaxsegError):
    """Missing, corrupt or inconsistent data; the message names the file."""


class ConfigError(JaxsegError):
    """An unknown experiment, key or value in a configuration."""


class WorkdirError(JaxsegError):
    """The workdir cannot be written (read-only or full disk); what was written stays."""


class TrainingError(JaxsegError):
    """Training cannot go on as configured (e.g. it diverged); the message says what to change."""


class Interrupted(Exception):
    """SIGTERM or SIGINT stopped training at a step boundary after a checkpoint was saved."""

    def __init__(self, signum: int, step: int, workdir: str):
        super().__init__(f"signal {signum} at step {step}")
        self.signum, self.step, self.workdir = signum, step, workdir
