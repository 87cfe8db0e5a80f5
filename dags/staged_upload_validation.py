"""
### Staged upload validation

Large training files land in `uploads/` under the Variable `staging_root` (default
`s3://training-data/`; a local folder or `file://` root works too), usually through
`python -m dataset_ops.upload FILE --data-type T`. Every 5 minutes this DAG picks up each complete
file (S3 shows a multipart upload only once it is completed), validates it as a stream with the
rule set of its data type (`include/validation/<data_type>.yaml`), then:

* **valid**: copied to `fresh/` (server-side on S3), verified, listed in `fresh/_manifest.json`
  (the suite's dataset manifest: path, bytes, sha256, rows, the producing DAG run), then the
  upload is removed; an event on the Asset `x-dataset-ops://staging/fresh` lets downstream DAGs
  run on the new data;
* **invalid**: moved to `failed/` with `<file>.report.json` beside it (first errors with line,
  byte offset and reason; totals).

**Nothing is ever replaced.** Each name keeps versions: the first file of a name is
`fresh/<name>` (version 1); different content uploaded later under the same name becomes
`fresh/<stem>.v2<ext>`, `.v3`, ... (`train.jsonl` -> `train.v2.jsonl`, `t.jsonl.gz` ->
`t.v2.jsonl.gz`), taken with a conditional write (S3 `If-None-Match: *`, a local `link`) so two
runs never take the same version. Content equal (sha256) to a version already in the folder is a
**duplicate**: nothing is written, the upload is removed, the status record says
`duplicate_of`, the log says `duplicate of fresh/X: skipped`, and **no Asset event** is emitted
(there is no new data). `failed/` works the same way, each version with its own report. A
promotion's Asset event extra names the version: `name` (the upload name), `version`, `key`
(e.g. `fresh/train.v2.jsonl`), `uri`, `bytes`, `sha256`, `records` (from the file's manifest
entry), `data_type`, `manifest` (the URI of `fresh/_manifest.json`). An upload that
was replaced while it was validated is left in `uploads/` for the next run.

Each file is one mapped task: a bad file never blocks the others. Every name has a status record
(`_status/<name>.json`: uploading, uploaded, validating, fresh, failed; the current version and
key, every kept version with its sha256, sizes, records, timings, error summary); list them with
`python -m dataset_ops.staging list --state failed`.

The upload API (`/dataset-ops/staging`, and the Uploads page) starts a run with `names` set to
the upload it just completed, so a file is validated at once; the five-minute schedule is the
safety net.

Manual runs: set `retry_failed` to files in `failed/` (e.g. `train.jsonl` or `train.v2.jsonl`) to
validate them again, with the same rules or relaxed ones through `rule_overrides`
(e.g. `{"min_records": 1, "max_errors": 1000}`).
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from dataset_ops.dag_defaults import DEFAULT_ARGS, START_DATE
from dataset_ops.staging.assets import FRESH_ALIAS, FRESH_ASSET


@dag(
    dag_id="staged_upload_validation",
    schedule="*/5 * * * *",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["staging", "validation", "s3"],
    doc_md=__doc__,
    params={
        "names": Param(
            [],
            type=["array", "null"],
            items={"type": "string", "pattern": r"^[^/\\][^\\]*$"},
            title="Validate these uploads now",
            description="Names in uploads/ to validate in this run (default: every waiting file).",
        ),
        "retry_failed": Param(
            [],
            type=["array", "null"],
            items={"type": "string", "pattern": r"^[^/\\][^\\]*$"},
            title="Re-validate failed files",
            description="Names in failed/ to validate again (instead of scanning uploads/).",
        ),
        "rule_overrides": Param(
            {},
            type=["object", "null"],
            title="Rule overrides",
            description='Rule settings that replace the rule set\'s, e.g. {"min_records": 1}.',
        ),
    },
)
def staged_upload_validation():
    @task
    def find(params=None) -> list[dict]:
        """New complete uploads, or the failed files named in `retry_failed`."""
        from dataset_ops import settings
        from dataset_ops.staging.tasks import find_uploads, retry_targets

        storage = settings.staging_root().open()
        if params["retry_failed"]:
            return retry_targets(storage, params["retry_failed"])
        return find_uploads(storage, only=params.get("names") or None)

    @task(multiple_outputs=False, outlets=[FRESH_ALIAS], map_index_template="{{ upload_name }}")
    def validate(upload: dict, params=None, outlet_events=None) -> dict:
        """Validate one file as a stream; promote it to fresh/ or quarantine it in failed/."""
        from dataclasses import asdict

        from dataset_ops import settings
        from dataset_ops.staging.status import UploadState
        from dataset_ops.staging.tasks import process_upload, promotion_event_extra

        get_current_context()["upload_name"] = upload["name"]
        storage = settings.staging_root().open()
        status = process_upload(
            storage,
            upload["name"],
            upload["data_type"],
            params["rule_overrides"] or {},
            source_prefix=upload.get("source", "uploads"),
            source_key=upload.get("key"),
            producer=settings.producer(),
            rules=upload.get("rules"),
        )
        if status.state == UploadState.FRESH and not status.duplicate_of:  # a duplicate adds no data
            outlet_events[FRESH_ALIAS].add(FRESH_ASSET, extra=promotion_event_extra(storage, status))
        return asdict(status)

    @task(multiple_outputs=False, trigger_rule="all_done")
    def summary(results: list[dict]) -> dict:
        """Names by outcome: new in fresh/, failed (first error), duplicates (the kept file they
        equal), and uploads replaced during validation (left for the next run)."""
        # len() then index: iterating the lazy sequence probes one past the end (a logged 404)
        results = [r for r in (results[i] for i in range(len(results))) if r]
        return {
            "fresh": [r["name"] for r in results if r["state"] == "fresh" and not r.get("duplicate_of")],
            "failed": {r["name"]: r["error_summary"] for r in results if r["state"] == "failed"},
            "duplicates": {r["name"]: r["duplicate_of"] for r in results if r.get("duplicate_of")},
            "left_for_next_run": [r["name"] for r in results if r["state"] == "uploaded"],
        }

    summary(validate.expand(upload=find()))


staged_upload_validation()
