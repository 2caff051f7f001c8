"""`moestats doctor` in the UI: a job whose one step probes every workspace."""

from dagster import Failure, MetadataValue, OpExecutionContext, Output, job, op

from moestats_dagster.orchestration.lib.doctor import diagnose, failed, render
from moestats_dagster.orchestration.lib.metadata import DEFAULT_NAMING, Naming
from moestats_dagster.orchestration.lib.resources import MoEngageResource

DOCTOR_JOB = DEFAULT_NAMING.name("doctor")


def _probe(context: OpExecutionContext, moengage: MoEngageResource):
    findings = diagnose(moengage)
    report = MetadataValue.md(render(findings, tablefmt="github").replace("\n\n", "<br>"))
    context.log.info("\n" + render(findings))
    if failed(findings):
        raise Failure(
            description="moestats doctor found problems: "
            + "; ".join(f"{f.workspace} {f.check}: {f.detail}" for f in findings
                        if f.status == "fail"),
            metadata={"report": report},
        )  # fmt: skip
    return Output(None, metadata={"report": report})


def build_doctor_job(naming: Naming = DEFAULT_NAMING):
    @op(
        name=naming.name("probe_workspaces"),
        description="One cheap probe per workspace; fails on any ✗.",
        required_resource_keys={naming.moengage},
    )
    def probe_workspaces(context: OpExecutionContext):
        return _probe(context, getattr(context.resources, naming.moengage))

    @job(name=naming.name("doctor"), description="Probe every workspace: host, credentials, "
         "Stats API, Campaign Meta, rate-limit headers (what `moestats doctor` prints).")  # fmt: skip
    def doctor() -> None:
        probe_workspaces()

    return doctor
