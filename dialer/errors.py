"""A request from an agent that the dialer refuses: a stable code for programs, a sentence for people."""

from __future__ import annotations


class Refused(ValueError):
    def __init__(self, code: str, message: str, fields: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.fields = fields  # per-field problems ({field, message}), where the request was a form
