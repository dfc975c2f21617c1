import json

from actions.payloads import MASK, render, unknown_variables


def test_substitution_always_yields_valid_json_with_awkward_values():
    awkward = 'a "quote", a \\ backslash, a\nnewline, unicode ☃ and ${event_type}'
    rendered = render({"text": "by ${event_author}!", "list": ["${event_author}"]}, {"event_author": awkward})
    again = json.loads(json.dumps(rendered))
    assert again == {"text": f"by {awkward}!", "list": [awkward]}


def test_a_lone_reference_keeps_numbers_and_objects():
    context = {"artifact_version_index": 3, "metric_values": [0.1, 0.2], "artifact_metadata": {"cfg": {"lr": 0.1}}, "metric_value": 0.05}
    rendered = render({"i": "${artifact_version_index}", "v": "${metric_values}", "m": "${artifact_metadata.cfg}",
                       "s": "index ${artifact_version_index}", "x": "${metric_value}"}, context)
    assert rendered == {"i": 3, "v": [0.1, 0.2], "m": {"lr": 0.1}, "s": "index 3", "x": 0.05}


def test_variables_that_do_not_apply_are_empty_and_secrets_are_masked():
    rendered = render({"tag": "${tag}", "auth": "Bearer ${ACCESS_TOKEN}", "missing": "${artifact_metadata.nope}"}, {"tag": ""}, {"ACCESS_TOKEN": MASK})
    assert rendered == {"tag": "", "auth": f"Bearer {MASK}", "missing": ""}


def test_unknown_variables_are_reported_and_secret_names_allowed():
    template = {"a": "${event_type} ${bogus}", "${also_bogus}": 1, "b": "${MY_SECRET} ${artifact_metadata.any_key}"}
    assert unknown_variables(template) == ["MY_SECRET", "also_bogus", "bogus"]
    assert unknown_variables(template, ["MY_SECRET"]) == ["also_bogus", "bogus"]
