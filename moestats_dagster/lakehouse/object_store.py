"""The lake's files on object storage: `MOESTATS_LAKE_PATH=s3://bucket/prefix`.

DuckLake writes and reads its Parquet files through DuckDB's httpfs extension; what it needs from
us is a DuckDB secret for the bucket on every connection. The credentials come from the
environment, as every AWS tool reads them, and never from the workspaces file, the UI or a log:

- `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`): used as given;
- neither: DuckDB's aws extension walks the AWS credential chain (config files, SSO, web identity
  as on Kubernetes with IRSA, the instance's role);
- `AWS_REGION` / `AWS_DEFAULT_REGION`: the bucket's region (default us-east-1);
- `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`: an S3-compatible server instead of AWS (MinIO,
  Cloudflare R2, Google Cloud Storage's interoperability endpoint, a local test server), addressed
  path-style (`MOESTATS_S3_URL_STYLE=vhost` to change it).

Only `s3://` URLs are taken: R2 and GCS are reached through their S3-compatible endpoints, which
keeps one tested path. Why by hand: DuckDB has no "secret from the environment" for a custom
endpoint, and its errors may quote the statement that created the secret — ours never leave
this module with a credential in them.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote, urlsplit

from moestats_dagster.messages import said

SCHEMES = ("s3",)
_OTHER_SCHEMES = ("gs", "gcs", "r2", "az", "azure", "abfss", "http", "https", "hf")
URL_STYLE_ENV = "MOESTATS_S3_URL_STYLE"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")  # S3's bucket naming rules


class ObjectStoreError(RuntimeError):
    """The lake's object store is misnamed, out of reach or refuses us; the message says which
    and what to do. It never contains a credential."""


class ObjectStoreRefused(ObjectStoreError):
    """The object store refuses these credentials, or the bucket does not exist: the same
    answer until someone changes them (not retried)."""


# Every HTTP wait on the bucket is bounded: DuckDB's default (30 s a try, 3 retries with backoff)
# held a publish to a store that accepted the PUT and then hung for about four minutes. With
# these, a hung or dead endpoint fails a read or a write within about HTTP_TIMEOUT_SECONDS x
# (HTTP_RETRIES + 1) plus the backoff: under a minute.
HTTP_TIMEOUT_SECONDS = 10
HTTP_RETRIES = 2


def is_url(path: str | os.PathLike[str]) -> bool:
    """An object-store URL (scheme://…), not a local folder."""
    return "://" in str(path)


def parse(url: str) -> tuple[str, str]:
    """(bucket, prefix) of an s3:// lake URL; a clear error for anything else."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        hint = (
            " Cloudflare R2 and Google Cloud Storage: use s3://bucket/prefix with "
            "AWS_ENDPOINT_URL_S3 set to their S3-compatible endpoint and an HMAC key in "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
            if scheme in _OTHER_SCHEMES
            else ""
        )
        raise ObjectStoreError(
            f"the lake path {url[:200]!r} is not a folder or an s3:// URL: object storage is "
            f"reached as s3://bucket/prefix.{hint}"
        )
    bucket, prefix = parts.netloc, parts.path.strip("/")
    if not _BUCKET.match(bucket) or parts.query or parts.fragment or "@" in url:
        raise ObjectStoreError(
            f"the lake path {url[:200]!r} does not name a bucket: write s3://bucket/prefix (a "
            "bucket of 3-63 lowercase letters, digits, dots and hyphens; credentials belong in "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, never in the URL)"
        )
    if any(segment in ("", ".", "..") for segment in prefix.split("/")) and prefix:
        raise ObjectStoreError(
            f"the lake path {url[:200]!r} has an empty, '.' or '..' segment; write "
            "s3://bucket/prefix/of/plain/names"
        )
    return bucket, prefix


def root(url: str) -> str:
    """The lake's URL normalized: s3://bucket/prefix/ (with the trailing slash)."""
    bucket, prefix = parse(url)
    return f"s3://{bucket}/{prefix + '/' if prefix else ''}"


def _sql(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def endpoint() -> tuple[str, bool] | None:
    """(host[:port], use_ssl) of an S3-compatible endpoint from the environment, or None (AWS)."""
    value = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
    value = value.strip()
    if not value:
        return None
    parts = urlsplit(value if "://" in value else f"https://{value}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ObjectStoreError(
            "AWS_ENDPOINT_URL_S3/AWS_ENDPOINT_URL is not an http(s) URL such as "
            "http://127.0.0.1:9000 or https://<account>.r2.cloudflarestorage.com"
        )
    return parts.netloc.rsplit("@", 1)[-1], parts.scheme == "https"


def describe_credentials() -> str:
    """Where the credentials come from, for `moestats doctor` (names, never values)."""
    where = endpoint()
    at = f"endpoint {where[0]}" if where else "AWS"
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        token = " + AWS_SESSION_TOKEN" if os.environ.get("AWS_SESSION_TOKEN") else ""
        return f"{at}, key from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY{token}"
    return f"{at}, credentials from the AWS credential chain"


def configure(conn, url: str) -> None:
    """Load httpfs and create the bucket's secret on a DuckDB connection (in memory only)."""
    bucket, _ = parse(url)
    options = {"TYPE": "s3", "SCOPE": _sql(f"s3://{bucket}/")}
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    options["REGION"] = _sql(region.strip())
    where = endpoint()
    if where is not None:
        options["ENDPOINT"] = _sql(where[0])
        options["USE_SSL"] = "true" if where[1] else "false"
        style = os.environ.get(URL_STYLE_ENV, "path").strip().lower()
        if style not in ("path", "vhost"):
            raise ObjectStoreError(f"{URL_STYLE_ENV} must be path or vhost")
        options["URL_STYLE"] = _sql(style)
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    values = []
    if key and secret:
        values = [key, secret]
        options.update(KEY_ID=_sql(key), SECRET=_sql(secret))
        if token := os.environ.get("AWS_SESSION_TOKEN"):
            values.append(token)
            options["SESSION_TOKEN"] = _sql(token)
    else:
        options["PROVIDER"] = "credential_chain"
    body = ", ".join(f"{k} {v}" for k, v in options.items())
    try:
        conn.execute("LOAD httpfs")
        conn.execute(f"SET http_timeout = {HTTP_TIMEOUT_SECONDS}")
        conn.execute(f"SET http_retries = {HTTP_RETRIES}")
        if "PROVIDER" in options:
            conn.execute("LOAD aws")
        conn.execute(f"CREATE OR REPLACE SECRET moestats_lake ({body})")
    except Exception as exc:
        text = said(exc)
        for value in values:
            text = text.replace(value, "***")
        raise ObjectStoreError(
            f"could not set up access to s3://{bucket}/ ({describe_credentials()}): {text}. "
            "Check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or the AWS profile) and the region"
        ) from None


def _where() -> str:
    found = endpoint()
    return f"endpoint {found[0]}" if found else "AWS's endpoint"


def as_s3_url(url: str, bucket: str) -> str:
    """An object's URL as DuckDB's errors show it (http(s)://endpoint/bucket/key path-style,
    https://bucket.host/key virtual-hosted) written as s3://bucket/key; others unchanged."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return url
    path = unquote(parts.path)
    if path.startswith(f"/{bucket}/"):
        return f"s3://{path[1:]}"
    if (parts.hostname or "").startswith(f"{bucket}."):
        return f"s3://{bucket}{path}"
    return url


def explain(url: str, exc: BaseException) -> ObjectStoreError | None:
    """A clear error for the object store refusing or not answering (None: not such an error)."""
    text = str(exc)
    lowered = text.lower()
    bucket, _ = parse(url)
    said = next((line for line in text.splitlines() if line.strip()), "")[:200]
    for value in (os.environ.get("AWS_SECRET_ACCESS_KEY"), os.environ.get("AWS_SESSION_TOKEN")):
        if value:
            said = said.replace(value, "***")
    # the status as DuckDB words it ("Forbidden (HTTP code 403)"): a bare "403" also matched
    # bucket names, keys and ports that contain those digits
    refused = ("http 403", "http code 403", "access denied", "accessdenied", "forbidden")
    if any(t in lowered for t in refused):
        return ObjectStoreRefused(
            f"the object store refused access to s3://{bucket}/ ({describe_credentials()}; "
            f"{said}): give these credentials s3:GetObject, s3:PutObject, s3:DeleteObject and "
            "s3:ListBucket on the bucket, or set the right AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY; nothing was written"
        )
    not_found = any(t in lowered for t in ("http 404", "http code 404", "nosuchbucket",
                    "no such bucket", "bucket does not exist"))  # fmt: skip
    if not_found:  # a missing data file is told apart before (lake._explain_damage)
        return ObjectStoreRefused(
            f"the bucket {bucket} does not exist ({describe_credentials()}): create it, or "
            "point MOESTATS_LAKE_PATH at one that does; nothing was written"
        )
    if any(t in lowered for t in ("could not establish connection", "connection refused",
           "could not connect", "timed out", "timeout", "couldn't resolve", "could not resolve",
           "connection error", "failed to read connection",
           # a connection reset mid-transfer, as curl words it (DuckDB quotes it)
           "failure when receiving data from the peer", "failure when sending data to the peer",
           "connection reset", "connection was reset")):  # fmt: skip
        verb = "write" if " put " in f" {lowered} " or "http put" in lowered else "answer"
        return ObjectStoreError(
            f"the object store for s3://{bucket}/ ({_where()}) did not {verb} within "
            f"{HTTP_TIMEOUT_SECONDS} s x {HTTP_RETRIES + 1} tries ({describe_credentials()}; "
            f"{said}): check the endpoint (AWS_ENDPOINT_URL_S3), the network and the region; "
            "nothing was written"
        )
    return None
