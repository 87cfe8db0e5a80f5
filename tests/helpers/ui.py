"""The Airflow 3.3.2 UI in headless Chromium, driven with Playwright for Python (Debian's
``/usr/bin/chromium``, never a browser Playwright downloads): log in, open a DAG's Trigger form,
fill its Params by their titles, save a screenshot of the form.

Selectors (Airflow 3.3.2): the Trigger form is a dialog headed ``Trigger Dag - <dag_id>``;
number Params are spinbuttons and boolean Params checkboxes named by the Param's ``title``; a
string Param's input is not labelled (its label points at another id), so it is found by the
id the UI gives it, ``element_<param name>``; an array of strings is a textarea, one item per
line. Switches hide their checkbox: the visible switch (the checkbox's parent label) is
clicked.
"""

from __future__ import annotations

import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers.dags import load_dag

CHROMIUM = "/usr/bin/chromium"  # Debian's package (`make install`); Playwright downloads no browser
VIEWPORT = {"width": 1280, "height": 900}


@contextmanager
def chromium():
    """Headless Chromium from ``/usr/bin/chromium``; fails the test when it is missing."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: `make install` installs it (Debian package chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def logged_in_page(browser, stack, viewer: bool = False):
    """A tab in a fresh browser context (:data:`VIEWPORT`) logged in to ``stack``'s UI as its
    admin (``viewer``: as its read-only user); the context is closed afterwards."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        tab = context.new_page()
        log_in(tab, stack, viewer)
        yield tab
    finally:
        context.close()


def log_in(tab, stack, viewer: bool = False) -> None:
    """Sign in on the SimpleAuthManager login page the UI redirects to (as the admin, or as the
    stack's Viewer)."""
    from playwright.sync_api import expect

    tab.goto(f"{stack.api_url}/")
    expect(tab.get_by_role("heading", name="Sign into Airflow")).to_be_visible()
    tab.get_by_label("Username").fill(stack.viewer_username if viewer else stack.username)
    tab.get_by_label("Password").fill(stack.viewer_password if viewer else stack.password)
    tab.get_by_role("button", name="Sign in").click()
    tab.wait_for_url(lambda url: "/auth/login" not in url)
    # the navigation's labels come with the UI's translations, fetched after the page: on a busy
    # machine (a CI run beside benchmarks, load average 12) they took over the 5 s default
    expect(tab.get_by_role("link", name="Dags", exact=True)).to_be_visible(timeout=30_000)


def open_trigger_form(tab, stack, dag_id: str):
    """Open the DAG's page and its Trigger form; the form's dialog."""
    from playwright.sync_api import expect

    tab.goto(f"{stack.api_url}/dags/{dag_id}")
    tab.get_by_role("button", name="Trigger Dag").click()
    dialog = tab.get_by_role("dialog").filter(
        has=tab.get_by_role("heading", name=f"Trigger Dag - {dag_id}", exact=True)
    )
    expect(dialog).to_be_visible()
    return dialog


def fill_params(dialog, dag_id: str, values: dict, every: bool = True) -> None:
    """Fill the form's field of each Param of the DAG with ``values[name]``, found by the Param's
    title; with ``every``, every Param must have a value (and no value may name a Param the DAG
    lacks)."""
    from playwright.sync_api import expect

    params = load_dag(dag_id).params
    if every:
        assert set(values) == set(params.keys()), f"{dag_id}'s Params are {sorted(params.keys())}"
    for name, value in values.items():
        schema = params.get_param(name).schema
        title, kind = schema["title"], schema["type"]
        if isinstance(kind, list):  # ["string", "null"]: an optional field
            kind = next(k for k in kind if k != "null")
        if kind == "boolean":
            box = dialog.get_by_role("checkbox", name=title, exact=True)
            if box.is_checked() != value:
                box.locator("xpath=..").click()  # the visible switch; the input itself is clipped
            expect(box).to_be_checked(checked=value)
        elif kind in ("number", "integer"):
            field = dialog.get_by_role("spinbutton", name=title, exact=True)
            field.fill(str(value))
            expect(field).to_have_value(str(value))
        elif kind == "string":
            field = dialog.locator(f"#element_{name}")  # the UI's id for the Param's input
            field.fill(value)
            expect(field).to_have_value(value)
        elif kind == "array" and schema.get("items", {}).get("type", "string") == "string":
            field = dialog.locator(f"#element_{name}")  # a textarea: one item per line
            field.fill("\n".join(value))
        else:
            raise AssertionError(f"no form filler for Param {name!r} of type {kind!r}")


def save_form_screenshot(tab, dialog, dag_id: str) -> Path:
    """``trigger-<dag_id>.png``: the page with the whole filled form, in the folder named by
    ``DATASET_OPS_SCREENSHOTS`` (``make screenshots``: ``docs/``), else in a temporary folder, so
    a test run leaves the committed pictures alone. The dialog is taller than 900 px and scrolls
    inside the page, so the viewport grows to fit it for the shot."""
    folder = Path(os.environ.get("DATASET_OPS_SCREENSHOTS") or tempfile.mkdtemp(prefix="dataset-ops-shots-"))
    path = folder / f"trigger-{dag_id}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    height = dialog.bounding_box()["height"]
    tab.set_viewport_size(
        {"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], math.ceil(height) + 140)}
    )
    dialog.get_by_role("heading", name=f"Trigger Dag - {dag_id}").scroll_into_view_if_needed()
    tab.screenshot(path=str(path))
    tab.set_viewport_size(VIEWPORT)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path


def show_run_parameters(dialog) -> None:
    """Expand the form's *Run Parameters* section when it is collapsed."""
    section = dialog.get_by_role("button", name="Run Parameters")
    if section.get_attribute("aria-expanded") == "false":
        section.click()


def keep_paused(dialog, dag_id: str) -> None:
    """Untick *Unpause <dag_id> on trigger* (shown for a paused DAG, ticked by default), so the
    run is created but not started."""
    from playwright.sync_api import expect

    box = dialog.get_by_role("checkbox", name=f"Unpause {dag_id} on trigger")
    if box.is_checked():
        box.locator("xpath=..").click()
    expect(box).not_to_be_checked()


def clear_logical_date(tab, dialog) -> None:
    """Empty the form's Logical Date (its date picker's *Clear start date*): a run without a
    logical date or data interval."""
    from playwright.sync_api import expect

    picker = dialog.get_by_test_id("datetime-input")
    picker.click()
    tab.get_by_role("button", name="Clear start date").click()
    picker.click()  # closes the picker (Escape would close the whole form)
    expect(picker).not_to_contain_text("20")
