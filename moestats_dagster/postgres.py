"""PostgreSQL as our messages name it: where (user@host:port/dbname), never the password, and one
wording for a server out of reach. The ground floor: used by the rate windows (moengage/) and the
lake's catalog and locks (lakehouse/), it imports nothing of ours."""

from __future__ import annotations


def describe_postgres(url: str) -> str:
    """`user@host:port/dbname` of a libpq URL or key=value string, never its password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except Exception:  # an unparsable URL still must not be echoed: it may hold the password
        return "an unparsable PostgreSQL URL"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"{user}{parts.get('host') or 'localhost'}{port}/{parts.get('dbname') or '(default)'}"


def scrub_postgres(text: str, url: str) -> str:
    """`text` without the PostgreSQL URL or its password (DuckDB and libpq quote what failed)."""
    from psycopg.conninfo import conninfo_to_dict

    text = text.replace(url, describe_postgres(url))
    try:
        password = conninfo_to_dict(url).get("password")
    except Exception:
        password = None
    return text.replace(password, "***") if password else text


def unreachable_text(what: str, url: str, cause: object, consequence: str) -> str:
    """What failed, where (no password), why, and the fix: one wording for every place our
    code meets PostgreSQL (rate windows, the lake's catalog, the publish lock)."""
    cause = " ".join(scrub_postgres(str(cause), url).split())[:300]
    return (
        f"{what} in PostgreSQL is unreachable ({describe_postgres(url)}): {cause}. Check that "
        f"the server is up and that MOESTATS_POSTGRES_URL on this host names it; {consequence}"
    )
