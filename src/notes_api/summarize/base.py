"""The summarizer interface the job handler depends on, and the errors it may raise."""

from typing import Protocol


class SummarizerError(Exception):
    """A summary could not be made. `transient` says whether trying again later may succeed."""

    transient: bool = False


class TransientSummarizerError(SummarizerError):
    """The backend was unreachable, overloaded or answered badly; a later attempt may succeed."""

    transient = True


class PermanentSummarizerError(SummarizerError):
    """Retrying cannot help: the input is unusable or the backend rejected the request."""

    transient = False


class Summarizer(Protocol):
    """Turns a note into a short summary.

    Error messages are short and human-readable: they end up in job records, so they never
    carry secrets or whole response bodies.
    """

    name: str

    async def summarize(self, text: str, *, title: str | None = None) -> str: ...

    async def aclose(self) -> None: ...
