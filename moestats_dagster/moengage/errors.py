"""Errors raised by the Stats API client, each worded for the person who must fix the problem.

None of them ever carries the API key: messages name the workspace and the request body only.
"""

from __future__ import annotations

import json
from typing import Any


class MoEngageError(Exception):
    """Base class of every error the client raises."""


class ConfigurationError(MoEngageError):
    """The client was set up with a value it must refuse (e.g. an unknown data center)."""


class RequestFailed(MoEngageError):
    """The API answered a call with an error status that will not succeed on retry."""

    def __init__(self, message: str, *, status: int | None = None, workspace_id: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.workspace_id = workspace_id


class AuthenticationError(RequestFailed):
    """401: the workspace id or the Campaign report API key is wrong."""


class AccessDeniedError(RequestFailed):
    """403: the Stats API is not enabled for this workspace."""


class BadRequestError(RequestFailed):
    """400: the API refused the request body."""

    def __init__(self, message: str, *, body: dict[str, Any], api_message: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.body = body
        self.api_message = api_message


class RetriesExhaustedError(RequestFailed):
    """429/5xx/connection errors kept coming after every retry."""


class ResponseShapeError(MoEngageError):
    """A 200 answer that is not JSON or not in the documented shape."""


class IncompleteDataError(MoEngageError):
    """Paging did not return every campaign exactly once: the result would be partial."""


def describe_body(body: dict[str, Any]) -> str:
    """The request body as compact JSON for error messages (it holds no secret)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"))
