"""The one error tree of opsloop.

Every error a user can see is one of these. The faces map each class to one HTTP
status (``http_status``), one MLflow ``error_code`` and one CLI exit code::

    OpsloopError                  500  INTERNAL_ERROR            exit 1
    ├── NotFound                  404  RESOURCE_DOES_NOT_EXIST   exit 3
    ├── InvalidInput              400  INVALID_PARAMETER_VALUE   exit 2
    │   └── PathOutsideRoot       400  INVALID_PARAMETER_VALUE   exit 2
    ├── Conflict                  409  RESOURCE_ALREADY_EXISTS   exit 4
    │   └── InvalidState          400  INVALID_STATE             exit 4
    ├── IntegrityError            500  DATA_LOSS                 exit 5
    └── Unavailable               503  TEMPORARILY_UNAVAILABLE   exit 6

Messages say what was wrong and, where it helps, what to do about it.
"""

from __future__ import annotations


class OpsloopError(Exception):
    """Base of every opsloop error."""

    http_status = 500
    error_code = "INTERNAL_ERROR"
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        """The one JSON shape of every API error (MLflow's, so its clients understand it)."""
        return {"error_code": self.error_code, "message": self.message}


class NotFound(OpsloopError):
    """A named or identified thing does not exist."""

    http_status = 404
    error_code = "RESOURCE_DOES_NOT_EXIST"
    exit_code = 3


class InvalidInput(OpsloopError):
    """A request or argument is malformed or out of range."""

    http_status = 400
    error_code = "INVALID_PARAMETER_VALUE"
    exit_code = 2


class PathOutsideRoot(InvalidInput):
    """An artifact path would escape its root (``..``, absolute, or a symlink out)."""


class Conflict(OpsloopError):
    """The thing already exists, or the change contradicts what is stored."""

    http_status = 409
    error_code = "RESOURCE_ALREADY_EXISTS"
    exit_code = 4


class InvalidState(Conflict):
    """The change is not allowed in the object's current state (e.g. a deleted run)."""

    http_status = 400
    error_code = "INVALID_STATE"


class IntegrityError(OpsloopError):
    """Stored data failed a check (e.g. an artifact's checksum does not match)."""

    error_code = "DATA_LOSS"
    exit_code = 5


class Unavailable(OpsloopError):
    """A backing service is not reachable or busy; retrying later may succeed."""

    http_status = 503
    error_code = "TEMPORARILY_UNAVAILABLE"
    exit_code = 6


__all__ = [
    "Conflict",
    "IntegrityError",
    "InvalidInput",
    "InvalidState",
    "NotFound",
    "OpsloopError",
    "PathOutsideRoot",
    "Unavailable",
]
