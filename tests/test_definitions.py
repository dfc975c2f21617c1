"""One definition per event type and per action kind (issue 12).

The source is read (ast) for code outside the definition packages that tells event types or
action kinds apart: a comparison (==, !=, in, not in, is) or a `match` case against one of them,
or a table keyed by them. Such code is where a new type would be forgotten; it belongs in the
type's definition (automations/event_types/<name>.py, automations/action_kinds/<name>.py,
actions/kinds.py)."""

import ast
from pathlib import Path

import pytest

from actions.models import IntegrationKind
from automations import action_kinds, event_types
from automations.models import ActionType, Automation, ScopeType
from events.models import EventType

ROOT = Path(__file__).resolve().parent.parent
APPS = ["actions", "automations", "config", "events", "mlflow_server", "ops", "teams", "tracking"]
DEFINITIONS = [ROOT / "automations" / "event_types", ROOT / "automations" / "action_kinds", ROOT / "actions" / "kinds.py"]
ENUMS = {"EventType", "ActionType", "IntegrationKind"}
# what may stand for an enum in code: the classes, and the aliases they were imported under (E, A)
VALUES = {*EventType.values, *ActionType.values, *IntegrationKind.values}


def sources():
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" in path.parts or any(path == d or d in path.parents for d in DEFINITIONS):
                continue
            yield path


def aliases(tree):
    """Names under which this module imported one of the enums."""
    names = set(ENUMS)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name in ENUMS:
                    names.add(alias.asname or alias.name)
    return names


def names_a_type(node, enum_names):
    """Whether `node` is an event type or action kind: EventType.X, A.X, "RUN_STATE", or a
    collection of them, or a set derived from them (RUN_EVENTS)."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in enum_names:
        return node.attr.isupper()
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value in VALUES and node.value.upper() == node.value or node.value in IntegrationKind.values
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(names_a_type(element, enum_names) for element in node.elts)
    if isinstance(node, ast.Name):
        return node.id.endswith("_EVENTS") or node.id in {"TRIGGERS", "ACTION_KIND", "KIND_FIELDS"}
    return False


def branches(path):
    tree = ast.parse(path.read_text(), str(path))
    enum_names = aliases(tree)
    skip = set()
    for node in ast.walk(tree):  # the enums' own bodies
        if isinstance(node, ast.ClassDef) and node.name in ENUMS:
            skip.update(id(n) for n in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Compare) and any(names_a_type(n, enum_names) for n in [node.left, *node.comparators]):
            found.append((node.lineno, "comparison"))
        elif isinstance(node, ast.match_case) and names_a_type(node.pattern.value if isinstance(node.pattern, ast.MatchValue) else None, enum_names):
            found.append((node.pattern.lineno, "match case"))
        elif isinstance(node, ast.Dict) and any(k is not None and names_a_type(k, enum_names) for k in node.keys):
            found.append((node.lineno, "table keyed by type"))
    return [f"{path.relative_to(ROOT)}:{line}: {what}: {ast.get_source_segment(path.read_text(), _at(tree, line)) or ''}".strip()
            for line, what in found]


def _at(tree, line):
    return next((n for n in ast.walk(tree) if isinstance(n, ast.stmt) and n.lineno == line), None)


def test_the_detector_finds_a_branch(tmp_path):
    """The check can fail: each form of branch it looks for is found in a sample module."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from automations.models import EventType as A, ActionType\n"
        "if kind == A.RUN_STATE: pass\n"
        "ok = action in (ActionType.NO_OP,)\n"
        "x = {'WEBHOOK': 1}\n"
        "y = kind != 'slack'\n"
        "match kind:\n    case 'RUN_STALLED': pass\n"
        "fine = kind == 'running'\n"
    )
    global ROOT
    root, ROOT = ROOT, tmp_path
    try:
        found = branches(sample)
    finally:
        ROOT = root
    assert [line.split(":")[1] for line in found] == ["2", "3", "4", "5", "7"]


def test_no_code_outside_the_definitions_branches_on_an_event_type_or_action_kind():
    found = [hit for path in sources() for hit in branches(path)]
    assert found == []


def test_templates_do_not_branch_on_an_event_type_or_action_kind():
    hits = []
    for path in sorted((ROOT / "templates").rglob("*.html")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "{% if" in line and any(f'"{value}"' in line or f"'{value}'" in line for value in VALUES):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert hits == []


@pytest.mark.parametrize("name", sorted(event_types.REGISTRY))
def test_each_event_type_is_one_complete_definition(name):
    definition = event_types.get(name)
    assert definition.name == name and definition.scopes and definition.records
    assert set(definition.scopes) <= set(ScopeType.values)
    assert name in dict(Automation._meta.get_field("event_type").choices)


def test_every_watchable_event_type_has_a_definition_and_every_kind_one():
    assert set(EventType.values) - set(event_types.REGISTRY) == {"RUN_HISTORY"}  # recorded, never watched
    for recorded in set(EventType.values) - event_types.names_where("watches_metric"):  # what is recorded triggers something
        assert event_types.triggered_by(recorded), recorded
    assert event_types.triggered_by("RUN_HISTORY") == ["RUN_METRIC_THRESHOLD", "RUN_METRIC_CHANGE", "RUN_METRIC_ZSCORE"]
    assert set(action_kinds.KINDS) == set(ActionType.values)


def test_field_map_for_the_admin_script_comes_from_the_definitions():
    from automations.admin import FILTER_FORM_FIELDS, field_map

    mapping = field_map()
    assert set(mapping["event"]) == set(event_types.REGISTRY)
    assert mapping["event"]["RUN_STALLED"] == ["minutes", "run_user", "run_name_regex"]
    assert mapping["action"]["SLACK"] == ["integration", "message", "severity", "title"]
    assert mapping["action"]["NO_OP"] == []
    for fields in mapping["event"].values():
        assert set(fields) <= set(FILTER_FORM_FIELDS)


def test_every_filter_field_of_every_definition_is_an_admin_form_field_with_its_help_text():
    """The admin form's event filter fields all come from the definitions: one per name, with the
    help text of each definition declaring it; automations/admin.py writes none of them."""
    from django import forms

    from automations.admin import FILTER_FIELDS, FILTER_FORM_FIELDS, AutomationForm

    expected = {}
    for definition in event_types.REGISTRY.values():
        for name, field in definition.fields.items():
            for form_name, help_text in field.form_helps(name).items():
                assert help_text, f"{definition.name}.{name}: no help text for {form_name}"
                expected.setdefault(form_name, []).append(help_text)
    assert set(FILTER_FORM_FIELDS) == set(expected) and len(FILTER_FORM_FIELDS) == len(expected)
    assert FILTER_FORM_FIELDS[-3:] == ["minutes", "run_user", "run_name_regex"]
    form = AutomationForm()
    for form_name, texts in expected.items():
        field = form.fields[form_name]
        assert not field.required
        for text in texts:
            assert text in field.help_text, (form_name, text)
        # the form's field is the generated one, not one written in the class
        assert AutomationForm.declared_fields[form_name] is FILTER_FIELDS[form_name]
    source = ast.parse((Path(ROOT) / "automations" / "admin.py").read_text())
    (form_class,) = [node for node in source.body if isinstance(node, ast.ClassDef) and node.name == "AutomationForm"]
    written = {target.id for node in form_class.body if isinstance(node, ast.Assign) for target in node.targets if isinstance(target, ast.Name)}
    assert written & set(expected) == set(), "AutomationForm declares event filter fields by hand"
    assert "collection" in written  # the check sees fields written in the class (the scope's)
    # kinds and choices come from the spec fields
    assert isinstance(AutomationForm.base_fields["minutes"], forms.IntegerField)
    assert "1 to 10080, default 10" in AutomationForm.base_fields["minutes"].help_text
    assert isinstance(AutomationForm.base_fields["states"], forms.MultipleChoiceField)
    assert isinstance(AutomationForm.base_fields["states"].widget, forms.CheckboxSelectMultiple)
    assert isinstance(AutomationForm.base_fields["threshold"], forms.FloatField)
    assert [c for c, _ in AutomationForm.base_fields["cmp"].choices] == ["", "$gt", "$gte", "$lt", "$lte", "$eq", "$ne"]
    assert "Threshold:" in AutomationForm.base_fields["window"].help_text and "Z-score:" in AutomationForm.base_fields["window"].help_text


def test_every_field_of_every_action_kind_is_an_admin_form_field_with_its_help_text():
    """Likewise for the action: integration, payload, title, message, severity come from the kinds."""
    from django import forms

    from automations.admin import ACTION_FIELDS, ACTION_FORM_FIELDS, AutomationForm

    expected = {}
    for kind in action_kinds.KINDS.values():
        for name, field in kind.fields.items():
            assert field.form_help(), f"{kind.name}.{name}: no help text"
            expected.setdefault(name, []).append(field.form_help())
    assert sorted(ACTION_FORM_FIELDS) == sorted(expected) == ["integration", "message", "payload", "severity", "title"]
    for name, texts in expected.items():
        assert AutomationForm.declared_fields[name] is ACTION_FIELDS[name] and not ACTION_FIELDS[name].required
        assert all(text in ACTION_FIELDS[name].help_text for text in texts)
    source = ast.parse((Path(ROOT) / "automations" / "admin.py").read_text())
    (form_class,) = [node for node in source.body if isinstance(node, ast.ClassDef) and node.name == "AutomationForm"]
    written = {target.id for node in form_class.body if isinstance(node, ast.Assign) for target in node.targets if isinstance(target, ast.Name)}
    assert written & set(expected) == set()
    assert isinstance(ACTION_FIELDS["integration"], forms.ModelChoiceField)
    assert isinstance(ACTION_FIELDS["payload"].widget, forms.Textarea) and "${run_id}" in ACTION_FIELDS["payload"].help_text
    assert [c for c, _ in ACTION_FIELDS["severity"].choices] == ["", "INFO", "WARN", "ERROR"]
