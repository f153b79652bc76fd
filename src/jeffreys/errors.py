"""The one exception type that reaches the user as a one-line message.

Anything raised as :class:`JeffreysError` is printed by the CLI as
``jeffreys CMD: error: MESSAGE`` (exit status 2) instead of a traceback. The message
must name the offending file, line, utterance or key.
"""


class JeffreysError(Exception):
    """Bad input or configuration, reported to the user in one line."""


class InputError(JeffreysError, ValueError):
    """A file, line, utterance or value given by the user is invalid."""
