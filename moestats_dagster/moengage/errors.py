"""Errors raised by the MoEngage clients, each worded for the person who must fix the problem.

None of them ever carries the API key: every message the transport builds passes its `Redactor`,
which also removes the key when a server or gateway echoes it back to us.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

QUOTE_LIMIT = 300  # characters of a server's text we quote in an error or a log line


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
    """403: the API (Stats, or Campaign Meta) is not enabled for this workspace."""


class BadRequestError(RequestFailed):
    """400: the API refused the request body."""

    def __init__(self, message: str, *, body: dict[str, Any], api_message: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.body = body
        self.api_message = api_message


class RetriesExhaustedError(RequestFailed):
    """429/5xx/timeouts kept coming until the retries or the run's retry budget ran out."""


class UnreachableError(RequestFailed):
    """No HTTP answer at all: DNS, a refused connection, TLS, a proxy or a timeout."""

    def __init__(self, message: str, *, host: str, port: int, cause: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.host, self.port, self.cause = host, port, cause


class CancelledError(MoEngageError):
    """Another call of the same run failed for good, so this one was stopped."""


class ResponseShapeError(MoEngageError):
    """A 200 answer that is not JSON or not in the documented shape."""


class SharedStateUnavailable(MoEngageError):
    """The PostgreSQL server holding the shared rate windows did not answer."""


class CredentialsEchoedError(ResponseShapeError):
    """A 200 answer carries the API key or the Basic token: a proxy is echoing the request."""


class NonFiniteNumberError(ResponseShapeError):
    """A 200 answer holding NaN or Infinity: MoEngage's own data for that day, which a retry gets
    again (so not retried; a gateway's answer that is not JSON at all may be cured by one)."""


class IncompleteDataError(MoEngageError):
    """Paging did not return every campaign exactly once: the result would be partial."""


def describe_body(body: dict[str, Any]) -> str:
    """The request body as compact JSON for error messages (it holds no secret)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


class Redactor:
    """Removes a workspace's API key, in every form we send it, from text we keep.

    We send the key only inside `Authorization: Basic base64(workspace_id:key)`; a gateway that
    echoes request headers (or a proxy error page quoting them) could put either form into an
    exception, a log line or Dagster metadata. Text is also capped, so a hostile body cannot
    flood the instance.
    """

    MASK = "***"

    def __init__(self, workspace_id: str, api_key: str) -> None:
        token = base64.b64encode(f"{workspace_id}:{api_key}".encode()).decode()
        forms = {api_key, token, token.rstrip("="), quote(api_key, safe=""), quote(token, safe="")}
        # Longest first, so a form that contains another is masked whole.
        self._forms = sorted((f for f in forms if len(f) >= 4), key=len, reverse=True)
        raw = {f.encode() for f in self._forms}
        escaped = {f.replace(b"/", b"\\/").replace(b"+", b"\\u002b") for f in raw}
        self._byte_forms = tuple(raw | escaped)

    def __call__(self, text: object, limit: int | None = QUOTE_LIMIT) -> str:
        out = str(text)
        for form in self._forms:
            out = out.replace(form, self.MASK)
        if limit is not None and len(out) > limit:
            out = f"{out[:limit]}… ({len(out) - limit} more characters)"
        return out

    def found_in(self, content: bytes) -> bool:
        """Whether an answer's bytes carry the key in any form we send it, JSON-escaped too
        (`\\/` for `/` in the base64 token): such an answer must never be stored."""
        return any(f in content for f in self._byte_forms)

    def all(self, texts: Iterable[object]) -> list[str]:
        return [self(t) for t in texts]
