"""A request from an agent that the dialer refuses: a stable code for programs, a sentence for people."""

from __future__ import annotations


class Refused(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message
