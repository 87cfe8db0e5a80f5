"""Rule sets: the YAML files in include/validation, overrides, and malformed rules."""

from __future__ import annotations

import json

import pytest

from dataset_ops.validation import (
    RULES_DIR,
    RuleError,
    RuleSet,
    available_rule_sets,
    load_rules,
    parse_size,
)


def test_the_bundled_rule_sets_load():
    names = available_rule_sets()
    assert {"training_jsonl", "newsgroups_jsonl", "tweets_csv", "text"} <= set(names)
    for name in names:
        rules = load_rules(name)
        assert rules.name == name
        assert rules.source == str(RULES_DIR / f"{name}.yaml")
        json.dumps(rules.to_dict())  # serializable as it is


def test_tweets_rules_describe_the_15_columns():
    rules = load_rules("tweets_csv")
    assert len(rules.csv.columns) == 15
    created = next(c for c in rules.csv.columns if c.name == "tweet_created")
    assert (created.type, created.format, created.nullable) == ("datetime", "%d-%m-%Y %H.%M", False)
    assert rules.allowed_formats == ("csv", "csv.gz")


def test_overrides_replace_top_level_keys():
    base = load_rules("training_jsonl")
    relaxed = load_rules("training_jsonl", {"min_records": 0, "max_errors": 1000, "max_file_size": "1 GiB"})
    assert (relaxed.min_records, relaxed.max_errors, relaxed.max_file_size) == (0, 1000, 1 << 30)
    assert relaxed.jsonl.schema == base.jsonl.schema
    assert base.min_records == 1  # the original is untouched
    assert load_rules("training_jsonl", {"max_records": 5}).max_records == 5
    assert load_rules("training_jsonl", {"max_file_size": None}).max_file_size is None


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"min_record": 1}, "unknown override key"),
        ({"max_errors": 0}, "max_errors"),
        ({"allowed_formats": ["xml"]}, "allowed_formats"),
        ({"max_file_size": "lots"}, "max_file_size"),
        ({"min_records": 10, "max_records": 5}, "max_records"),
        ({"jsonl": {"schema": {"type": "array"}}}, "type: object"),
        ({"jsonl": {"schema": {"type": "object", "properties": {"a": {"type": "strin"}}}}}, "JSON Schema"),
        ({"csv": {"columns": [{"name": "a", "type": "float"}]}}, "type 'float'"),
        ({"csv": {"columns": [{"name": "a"}, {"name": "a"}]}}, "duplicate"),
        ({"csv": {"header": "loose"}}, "csv.header"),
        ({"csv": {"delimiter": '"'}}, "csv.delimiter"),
        ({"csv": {"columns": [{"name": "a", "format": "%Y"}]}}, "format"),
        ({"csv": {"columns": [{"name": "a", "pattern": "("}]}}, "bad pattern"),
    ],
)
def test_malformed_overrides_are_rejected(overrides, message):
    with pytest.raises(RuleError, match=message):
        load_rules("training_jsonl", overrides)


def test_unknown_data_type_lists_the_known_ones():
    with pytest.raises(RuleError, match="training_jsonl"):
        load_rules("no_such_rules")
    with pytest.raises(RuleError, match="invalid data type"):
        load_rules("../etc/passwd")


def test_unknown_keys_in_a_yaml_file_are_rejected(tmp_path):
    (tmp_path / "typo.yaml").write_text("allowed_formats: [csv]\nmax_recods: 3\n")
    with pytest.raises(RuleError, match="max_recods"):
        load_rules("typo", rules_dir=tmp_path)
    assert available_rule_sets(tmp_path) == ["typo"]


@pytest.mark.parametrize(
    "value, expected",
    [(0, 0), (1024, 1024), ("64 MiB", 64 << 20), ("2GB", 2 * 10**9), ("1.5 KiB", 1536), ("1_000", 1000)],
)
def test_sizes_accept_units(value, expected):
    assert parse_size(value) == expected


def test_rule_set_round_trips_through_its_dict():
    rules = load_rules("tweets_csv")
    again = RuleSet.from_dict("tweets_csv", rules.to_dict())
    assert again.csv == rules.csv
    assert again.to_dict() == rules.to_dict()
