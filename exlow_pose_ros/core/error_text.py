"""Third-party exceptions as one line, for start-up messages that must stay one line."""

from __future__ import annotations


def first_line(error: BaseException) -> str:
    """The first non-blank line of `error` without its closing full stop (Ultralytics, onnxruntime and torch
    messages run to several lines); the exception's type name when it has no text."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0].rstrip(".") if lines else type(error).__name__
