"""Which failures Dagster's run retries (`run_retries` in dagster.yaml) may launch again.

Dagster retries a failed run whatever failed in it, unless the run carries the tag
`dagster/retry_on_asset_or_op_failure: false` when it fails. A failure a retry cannot cure tags its
run so, and says why in the run's log; everything else (429s and 5xx past the run's own retry
budget, a dropped connection, a busy lake, a crashed worker) is left to the retries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from dagster import AssetExecutionContext, Failure

from moestats_dagster.config import WorkspacesFileError
from moestats_dagster.lakehouse.lake import CatalogTooNew, CatalogTooOld, LakeDamaged
from moestats_dagster.lakehouse.object_store import ObjectStoreRefused
from moestats_dagster.model.normalize import MalformedPayloadError
from moestats_dagster.moengage import (
    AccessDeniedError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    CredentialsEchoedError,
    NonFiniteNumberError,
)
from moestats_dagster.orchestration.lib.partitions import DayNotOver
from moestats_dagster.orchestration.lib.resources import MissingApiKeyError

RETRY_TAG = "dagster/retry_on_asset_or_op_failure"
PERMANENT = (
    AuthenticationError,  # 401: the key is wrong until someone changes it
    AccessDeniedError,  # 403: MoEngage must enable the API for the account
    BadRequestError,  # 400: the same request gets the same answer
    ConfigurationError,
    CredentialsEchoedError,  # a gateway echoing the key will echo it again
    MalformedPayloadError,
    WorkspacesFileError,
    LakeDamaged,  # needs a restore, not another try
    CatalogTooOld,  # needs `moestats lake upgrade`
    CatalogTooNew,  # needs the release that wrote it
    ObjectStoreRefused,  # the bucket refuses these credentials, or does not exist
    NonFiniteNumberError,  # MoEngage's data for the day holds NaN: it answers the same again
    MissingApiKeyError,  # an unset env var stays unset
    DayNotOver,  # loaded once the day has ended, not by a retry now
)


def permanent(exc: BaseException) -> bool:
    """True when `exc`, or what it was raised from, is a failure a retry cannot cure. A
    `Failure(allow_retries=False)` (a blocking check refused the data) counts as one."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, PERMANENT) or (
            isinstance(seen, Failure) and seen.allow_retries is False
        ):
            return True
        seen = seen.__context__
    return False


@contextlib.contextmanager
def retried_only_if_curable(context: AssetExecutionContext, where: str) -> Iterator[None]:
    """Tag the run as not to be retried when what fails in the block is permanent."""
    try:
        yield
    except Exception as exc:
        if permanent(exc):
            with contextlib.suppress(Exception):  # the failure itself matters more than the tag
                context.instance.add_run_tags(context.run_id, {RETRY_TAG: "false"})
            context.log.warning(
                f"{where}: not retried — {type(exc).__name__} is not cured by running again "
                "(fix the cause, then re-run the partition or let the nightly catch-up do it)"
            )
        else:
            context.log.info(
                f"{where}: {type(exc).__name__} may be transient; with run_retries enabled "
                "(dagster.yaml) Dagster launches this run again"
            )
        raise
