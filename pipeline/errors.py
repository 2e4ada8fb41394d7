"""One error type for every problem a user can fix (bad params, bad corpus, bad checkpoint).

Stages catch it and print its message as one line, so a user sees `error: <file or key>: <what>`,
never a traceback, and the stage exits non-zero.
"""


class PipelineError(Exception):
    """A user-facing error: the message names the file, key or line and says what is wrong."""


class ConfigError(PipelineError):
    """A wrong key, type or value in params.yaml (or a profile)."""
