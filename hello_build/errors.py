"""The builder's own error: ``hello-build`` (and ``hello eval``) input problems."""

from hello_format.errors import HelloError


class BuildError(HelloError):
    """``hello-build`` input problems (the CLI prints ``error: <message>``, exit 2)."""
