"""Errors that reach the user as one line and an exit code (never a traceback)."""


class ReproError(Exception):
    """A problem the user can fix; `str(err)` is the one line the CLI prints."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UnknownModelError(ReproError):
    """A model id that is not in the manifest (exit code 2, like a usage error)."""

    exit_code = 2


class ManifestError(ReproError):
    """model_zoo.yaml does not validate."""


class CheckpointError(ReproError):
    """A checkpoint file is unreadable, truncated or does not fit the model."""


class DatasetError(ReproError):
    """A dataset folder has the wrong layout or label encoding."""


class FetchError(ReproError):
    """A download or import failed; nothing partial was left in the cache."""


def first_sentence(message: str, limit: int = 160) -> str:
    """The first sentence of a (library's) message for a one-line error, cut at a word boundary
    when still long (torch's messages run to paragraphs)."""
    first = message.strip().split(". ")[0].rstrip(".")
    if len(first) <= limit:
        return first
    return first[:limit].rsplit(" ", 1)[0].rstrip(",;:") + " …"
