"""How our messages quote an exception: ground floor, imported from any layer (like postgres.py)."""


def said(exc: BaseException, limit: int = 300, *, typed: bool = False) -> str:
    """`exc`'s first line, at most `limit` characters (`typed`: after its type's name,
    `RuntimeError: …`), or its type's name alone when it has no text — `str(exc).splitlines()[0]`
    fails on an exception without a message, inside the handler that was saying another."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = text.splitlines()[0][:limit]
    return f"{type(exc).__name__}: {line}" if typed else line
