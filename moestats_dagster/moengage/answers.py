"""Reading what MoEngage (or a gateway in front of it) answered: JSON bodies and error bodies."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import requests
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from moestats_dagster.moengage.errors import ResponseShapeError, describe_body


class NonFiniteNumber(ValueError):
    """A 200 body with NaN, Infinity or a number too large for a double; `path` says where."""

    def __init__(self, path: str, token: str) -> None:
        super().__init__(f"{path} = {token}")
        self.path, self.token = path, token


MAX_DEPTH = 1024  # orjson's nesting limit; MoEngage's answers nest about ten levels


class TooDeep(ValueError):
    """A 200 body nested deeper than any answer of the API: refused before it costs a stack."""

    def __init__(self, depth: int) -> None:
        super().__init__(f"nested deeper than {depth} levels")
        self.depth = depth


class _NonFinite:
    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token


def _float(text: str) -> float | _NonFinite:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)


def decode_json(content: bytes) -> Any:
    """Decode a 200 body. Raises `ValueError` for text that is not JSON and `NonFiniteNumber`
    (naming the JSON path) for NaN/Infinity or overflowing numbers, which JSON does not allow
    and which must never be stored as numbers."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise TooDeep(MAX_DEPTH) from None
        # not JSON at all, or NaN/Infinity/1e999 that only the standard library takes
    try:
        payload = json.loads(content, parse_constant=_NonFinite, parse_float=_float)
    except RecursionError:  # the standard library recurses; never let that escape unnamed
        raise TooDeep(MAX_DEPTH) from None
    found = _find_non_finite(payload, "")
    if found is not None:
        raise NonFiniteNumber(*found)
    return payload


def _find_non_finite(value: Any, path: str) -> tuple[str, str] | None:
    stack = [(value, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, _NonFinite):
            return where or "(the body)", node.token
        if isinstance(node, dict):
            stack += [(v, f"{where}.{k}" if where else str(k)) for k, v in reversed(node.items())]
        elif isinstance(node, list):
            stack += [(v, f"{where}[{i}]") for i, v in reversed(list(enumerate(node)))]
    return None


def campaign_of(path: str) -> str | None:
    """The campaign id of a path such as `data.<id>[0].platforms...` (Stats API answers)."""
    if not path.startswith("data."):
        return None
    return path[5:].split("[", 1)[0].split(".", 1)[0] or None


def describe_error_body(content: bytes, content_type: str | None) -> str:
    """MoEngage's error body, `{"title", "description", "code"}` (description may be null), as
    one line with all three; other JSON as compact JSON; anything else as text. Not yet redacted
    or capped: the caller does both."""
    try:
        payload = json.loads(content)
    except ValueError:
        text = content.decode("utf-8", "replace").strip()
        kind = f"non-JSON body ({content_type or 'no content-type'})"
        return f"{kind}: {' '.join(text.split())!r}" if text else "no body"
    if isinstance(payload, dict) and {"title", "description", "code"} & payload.keys():
        parts = [f"{k}={json.dumps(payload.get(k))}" for k in ("title", "description", "code")]
        return "MoEngage says " + ", ".join(parts)
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        error = payload["error"]
        return "MoEngage says " + json.dumps(
            {k: error[k] for k in ("message", "description", "code", "title") if k in error}
            or error
        )
    return "MoEngage says " + json.dumps(payload, separators=(",", ":"))


def check_envelope(
    payload: Any,
    body: dict[str, Any],
    *,
    workspace_id: str,
    api: str,
    counters: tuple[str, ...],
    required: tuple[str, ...] = (),
) -> dict[str, int | None]:
    """The parts every MoEngage envelope shares: an object whose `response_id` is our request_id
    and whose paging counters, where present, are non-negative integers. Counters in `required`
    must be present; the others are None when the answer lacks them."""
    if not isinstance(payload, dict):
        raise shape_error(f"the body is a {type(payload).__name__}, not an object",
                          body, workspace_id=workspace_id, api=api)  # fmt: skip
    if "response_id" in payload and payload.get("response_id") != body["request_id"]:
        raise shape_error(
            f"response_id {str(payload.get('response_id'))[:80]!r} does not match request_id "
            f"{body['request_id']!r}",
            body, workspace_id=workspace_id, api=api,
        )  # fmt: skip
    values: dict[str, int | None] = {}
    for key in counters:
        value = payload.get(key)
        if value is None and key not in required:
            values[key] = None
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise shape_error(f"{key} is {str(value)[:40]!r}, not a non-negative integer",
                              body, workspace_id=workspace_id, api=api)  # fmt: skip
        values[key] = value
    return values


def shape_error(
    what: str, body: dict[str, Any], *, workspace_id: str, api: str
) -> ResponseShapeError:
    return ResponseShapeError(
        f"workspace {workspace_id}: {api} answered 200 but {what}; request: {describe_body(body)}"
    )


def retry_after(resp: requests.Response, retry: Retry) -> float | None:
    """Seconds Retry-After asks for, as the server wrote it (urllib3 silently caps it at 6 h;
    we want to log what was asked). HTTP dates go through urllib3; garbage counts as absent."""
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            return retry.get_retry_after(resp.raw)
        except InvalidHeader:
            return None
    return seconds if math.isfinite(seconds) else None


def header_float(resp: requests.Response, name: str) -> float | None:
    try:
        value = float(resp.headers[name])
    except (KeyError, ValueError):
        return None
    return value if value == value and abs(value) != float("inf") else None
