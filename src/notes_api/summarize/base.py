"""The summarizer interface the job handler depends on, and the errors it may raise."""

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class SummarizerError(Exception):
    """A summary could not be made. `transient` says whether trying again later may succeed;
    `retry_after` (seconds), when the backend said, how long to wait before trying."""

    transient: bool = False
    retry_after: float | None = None


class TransientSummarizerError(SummarizerError):
    """The backend was unreachable, overloaded or answered badly; a later attempt may succeed."""

    transient = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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


@dataclass
class Usage:
    """What a summary cost on a model server, as its replies reported it."""

    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: "Usage") -> None:
        self.model_calls += other.model_calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens


@runtime_checkable
class MeteredSummarizer(Protocol):
    """A summarizer that pays per call (a model server) and says what each summary used."""

    async def summarize_metered(
        self, text: str, *, title: str | None = None
    ) -> tuple[str, Usage]: ...
