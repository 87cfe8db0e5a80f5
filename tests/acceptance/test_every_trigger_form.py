"""Every DAG's trigger form in the Airflow UI (headless Chromium, Playwright) on the acceptance
Airflow, submitted as a user does: with its defaults, filling only the Params that have none.

* Each form opens, accepts its own defaults and creates a run whose conf is exactly the
  defaults (plus the required values filled in). The DAG is paused and the form's *Unpause on
  trigger* unticked, so these runs never start; they are deleted afterwards.
* ``microservice_ingest``'s Entities field lists the entity names to choose from; with one entity
  chosen and the logical date cleared, the run has no logical date, ingests the last complete day
  for that entity only and skips the others.
"""

from __future__ import annotations

import re
from datetime import UTC, timedelta
from urllib.parse import unquote, urlsplit

import pytest
from helpers.dags import DAG_IDS, load_dag
from helpers.s3 import use_s3
from helpers.ui import (
    chromium,
    clear_logical_date,
    fill_params,
    keep_paused,
    logged_in_page,
    open_trigger_form,
    show_run_parameters,
)

from dataset_ops.storage import open_storage

pytestmark = [pytest.mark.integration, pytest.mark.acceptance]

RUN_TIMEOUT_MS = 300_000  # an upper bound for a run to end, not a timing assertion


def required_values(acc) -> dict[str, dict]:
    """The values a user must type for the Params without a default, per DAG."""
    from helpers.apify_server import RUN_ID

    return {
        "apify_dataset_download": {"run_id": RUN_ID},
        "inference_report": {"deployment_id": acc.inference.world.deployment_id},
        "inference_review": {"process_name": "accept_form_process"},
        "inference_dataset": {"process_name": "accept_form_process"},
        "inference_merge": {
            "process_names": ["accept_form_a", "accept_form_b"],
            "target_process_name": "accept_c",
        },
    }


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def page(browser, acceptance):
    """One browser context (1280x900) logged in to the stack's UI as its admin, for the module:
    each test starts from the DAG's page."""
    with logged_in_page(browser, acceptance.stack) as tab:
        yield tab


def _press_trigger(tab, dialog, dag_id: str) -> str:
    dialog.get_by_role("button", name="Trigger", exact=True).click()
    tab.wait_for_url(re.compile(rf"/dags/{dag_id}/runs/[^/]+"))
    return unquote(urlsplit(tab.url).path.split("/runs/", 1)[1].strip("/"))


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_the_trigger_form_submits_its_defaults(page, acceptance, dag_id):
    acc = acceptance
    acc.set_paused(dag_id, True)
    filled = required_values(acc).get(dag_id, {})
    params = load_dag(dag_id).params
    expected = {name: params[name] for name in params.keys() if name not in filled} | filled

    dialog = open_trigger_form(page, acc.stack, dag_id)
    keep_paused(dialog, dag_id)
    show_run_parameters(dialog)
    fill_params(dialog, dag_id, filled, every=False)
    run_id = _press_trigger(page, dialog, dag_id)
    try:
        run = acc.run(dag_id, run_id)
        assert run.conf == expected
        assert run.run_type.value == "manual" and run.logical_date is not None  # the form's "now"
    finally:
        acc.discard_run(dag_id, run_id)


def test_ingest_form_lists_the_entities_and_runs_one_without_a_logical_date(page, acceptance, monkeypatch):
    from dataset_ops.ingest.config import services_overview

    acc, dag_id = acceptance, "microservice_ingest"
    use_s3(monkeypatch, acc.s3_endpoint)
    entities = [name for *_, names in services_overview() for name in names]
    acc.set_paused(dag_id, False)
    dialog = open_trigger_form(page, acc.stack, dag_id)

    show_run_parameters(dialog)
    field = dialog.get_by_role("group").filter(has=page.locator('input[name="element_entities"]'))
    field.get_by_role("combobox").click()
    options = page.get_by_role("option")
    assert sorted(options.all_inner_texts()) == sorted(entities)
    options.filter(has_text=re.compile(r"^categorias$")).click()
    dialog.get_by_role(
        "heading", name=f"Trigger Dag - {dag_id}"
    ).click()  # closes the list (Escape: the form)
    clear_logical_date(page, dialog)
    run_id = _press_trigger(page, dialog, dag_id)

    assert acc.wait(dag_id, run_id) == "success", acc.states(dag_id, run_id)
    run = acc.run(dag_id, run_id)
    assert run.logical_date is None and run.conf["entities"] == ["categorias"]
    states = acc.states(dag_id, run_id)
    ran = {label for label, state in states.items() if label.startswith("ingest_") and state == "success"}
    assert len(ran) == 1, states
    day = (run.run_after.astimezone(UTC) - timedelta(hours=2)).date() - timedelta(days=1)
    lake = open_storage(acc.root("lake"))
    assert any(k.endswith(".csv") for k in lake.list(f"categorias/dt={day:%Y-%m-%d}")), day
