"""Errors for user mistakes: the command-line tools print them as one line and exit 2."""


class JaxsegError(Exception):
    """A problem with the user's input (files, data, configuration), not a bug."""


class DataError(JaxsegError):
    """Missing, corrupt or inconsistent data; the message names the file."""


class ConfigError(JaxsegError):
    """An unknown experiment, key or value in a configuration."""
