"""Typed errors raised by egr_core. The orchestration layer turns them into status rows."""

from __future__ import annotations


class EgrError(Exception):
    """Base class of every error egr raises on purpose."""

    #: The value written to the ``status`` column when this error ends an item.
    status: str = "failed"


class UnsupportedModelError(EgrError):
    status = "unsupported_model"

    def __init__(self, model_type: str, supported: list[str] | tuple[str, ...]) -> None:
        self.model_type = model_type
        self.supported = tuple(sorted(supported))
        super().__init__(
            f"unsupported model_type {model_type!r}; supported model types: "
            + ", ".join(self.supported)
        )


class ModelLoadError(EgrError):
    """A checkpoint that cannot be found or read (no such directory, no config, hub unreachable)."""

    status = "model_error"

    def __init__(self, model: str, reason: str) -> None:
        self.model, self.reason = model, reason
        super().__init__(f"model {model!r}: {reason}")


class TokenLayoutMismatchError(EgrError):
    """Image placeholder tokens in the prompt do not match the grid cells of the layout."""

    status = "layout_mismatch"

    def __init__(self, expected: int, got: int, model_type: str, what: str = "") -> None:
        self.expected, self.got, self.model_type = expected, got, model_type
        extra = f" ({what})" if what else ""
        super().__init__(
            f"{model_type}: image placeholder tokens do not match grid cells{extra}: "
            f"placeholders={got}, grid cells={expected}"
        )


class NonFiniteEntropyError(EgrError):
    status = "non_finite"


class EmptyRelevanceError(EgrError):
    status = "no_relevance"


class InputError(EgrError):
    """A caller-side problem: empty question, image too small, bad questions file, ..."""

    status = "bad_input"


class DocumentError(EgrError):
    """A PDF that cannot be used. Always names the file, and the page when there is one."""

    status = "error"

    def __init__(self, source: str, reason: str, page: int | None = None) -> None:
        self.source, self.reason, self.page = source, reason, page
        where = source if page is None else f"{source}, page {page}"
        super().__init__(f"{where}: {reason}")


class EncryptedDocumentError(DocumentError):
    status = "encrypted"


class CorruptDocumentError(DocumentError):
    status = "corrupt"


class EmptyDocumentError(DocumentError):
    status = "empty"


class PageRenderError(DocumentError):
    status = "render_failed"


class TooLargeError(DocumentError):
    status = "too_large"


class RenderTimeoutError(DocumentError):
    status = "timeout"


class OutOfMemoryError(DocumentError):
    """A document needed more memory than its limit (MuPDF allocation failure or RLIMIT_AS)."""

    status = "out_of_memory"


class WorkerCrashError(DocumentError):
    """The sandbox process rendering a document died (signal or abnormal exit)."""

    status = "crashed"


class UnreadableSourceError(DocumentError):
    """The bytes could not be read at all: missing file, permission, network/object-store error."""

    status = "unreadable"
