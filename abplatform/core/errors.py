"""Domain errors. Every message says what was wrong and what is allowed.

Raised by the core's validation and lifecycle rules and by the services; the edges turn
them into exit codes (CLI), HTTP statuses (router) or inline messages (dashboard).
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class: the message says what was wrong and what is allowed."""


class InvalidInputError(ServiceError, ValueError):
    """The request breaks a validation rule; nothing was changed."""


class NotFoundError(ServiceError, LookupError):
    """No experiment (or variant) of that name exists."""


class ConflictError(ServiceError):
    """The write conflicts with existing state (duplicate name, wrong status)."""


class StaleWriteError(ConflictError):
    """The experiment changed since it was read (optimistic locking)."""


__all__ = [
    "ConflictError",
    "InvalidInputError",
    "NotFoundError",
    "ServiceError",
    "StaleWriteError",
]
