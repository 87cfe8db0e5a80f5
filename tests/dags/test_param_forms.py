"""Every DAG's Params as the trigger form of the Airflow 3.3.2 UI shows them.

The form marks a field required (red ``*``) unless the Param's ``type`` is a list that holds
``"null"``, and sends ``null`` for a field a user leaves empty; an array field lists choices
only when the Param itself has ``examples`` (or ``enum``). So for each Param of each DAG:

* its default (when it has one) is valid against its own schema: the form accepts its defaults;
* a Param whose default is empty (``""``, ``[]``, ``{}``, None) allows ``null``: an optional
  field shows as optional and may be left empty;
* an array whose items have a fixed set of values lists them (``examples``);
* every Param has a title and a description (the form's label and help text).

The DAG code reads such a Param as "empty" whether it is empty or null; the acceptance layer
submits every form (``tests/acceptance/test_every_trigger_form.py``).
"""

from __future__ import annotations

import jsonschema
import pytest
from helpers.dags import DAG_IDS, load_dag

EMPTY = ("", [], {}, None)


def _params():
    for dag_id in DAG_IDS:
        params = load_dag(dag_id).params
        for name in params.keys():
            yield pytest.param(dag_id, name, params.get_param(name), id=f"{dag_id}.{name}")


@pytest.mark.parametrize(("dag_id", "name", "param"), list(_params()))
def test_the_trigger_form_accepts_its_defaults_and_empty_optional_fields(dag_id, name, param):
    from airflow.sdk.definitions._internal.types import NOTSET

    schema = param.schema
    assert schema.get("title") and param.description, f"{dag_id}.{name}: a title and a description"
    types = schema.get("type")
    if param.value is not NOTSET:
        jsonschema.validate(param.value, schema)  # the form's own default is accepted
        if param.value in EMPTY and not isinstance(param.value, bool):
            assert isinstance(types, list) and "null" in types, (
                f"{dag_id}.{name}: default {param.value!r} but type {types!r}: the form shows it as required"
            )
            jsonschema.validate(None, schema)  # a field left empty is sent as null
    items = schema.get("items") or {}
    if "array" in (types if isinstance(types, list) else [types]) and "enum" in items:
        assert schema.get("examples") == items["enum"], f"{dag_id}.{name}: list the values in the form"
