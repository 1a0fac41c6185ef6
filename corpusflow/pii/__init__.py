"""Personal data in Chinese text: validated detection and redaction (see ``detect``)."""

from corpusflow.pii.detect import PLACEHOLDERS, TYPES, Span, find_pii, redact

__all__ = ["PLACEHOLDERS", "TYPES", "Span", "find_pii", "redact"]
