"""The event types automations watch: one definition per type, registered by its name.

A definition (a subclass of `base.EventDefinition`, one module each) owns everything about its
type: the filter fields and their validation (the API, the admin form and the OpenAPI schema are
built from `fields`), the scopes that allow it, the recorded events that trigger it, how it
matches one (or evaluates a run's metric window), the payload variables it provides with their
sample values, and its sentence for Slack and pages. Nothing outside this package branches on an
event type (tests/test_definitions.py greps for it).

A new event type is a new module here, imported below.
"""

REGISTRY = {}


def register(cls):
    """Class decorator: make `cls` the definition of the event type `cls.name`."""
    REGISTRY[cls.name] = cls()
    return cls


def get(name):
    """The definition of an automation's event type."""
    return REGISTRY[name]


def triggered_by(record_type):
    """The names of the event types an Event of `record_type` may trigger."""
    return [name for name, definition in REGISTRY.items() if record_type in definition.records]


def scope_events():
    """{scope type: the event types it allows} (SPEC.md section 2)."""
    table = {}
    for name, definition in REGISTRY.items():
        for scope in definition.scopes:
            table.setdefault(scope, set()).add(name)
    return table


def names_where(attribute):
    """The event types whose definition has `attribute` true, e.g. `watches_metric`."""
    return {name for name, definition in REGISTRY.items() if getattr(definition, attribute, False)}


def filter_form_fields():
    """{event type: [admin form field names]} — what the admin form shows for each type."""
    return {name: definition.form_fields() for name, definition in REGISTRY.items()}


def admin_form_fields():
    """{admin form field name: Django form field} for every filter field of every definition
    (automations.spec.build_form_fields: one per name, the help texts of all that declare it)."""
    from ..spec import build_form_fields

    return build_form_fields(definition.fields for definition in REGISTRY.values())


def filter_declarations():
    """{filter field: spec Field} over the definitions (the first declaring each name)."""
    from ..spec import declarations

    return declarations(definition.fields for definition in REGISTRY.values())


def sweep(now=None):
    """Give each definition its turn in the periodic sweep (RUN_STALLED finds silent runs)."""
    return sum(definition.sweep(now) or 0 for definition in REGISTRY.values())


from . import (  # noqa: E402,F401  (each module registers its definition)
    create_artifact,
    link_artifact,
    add_artifact_alias,
    add_artifact_tag,
    run_state,
    run_metric_threshold,
    run_metric_change,
    run_metric_zscore,
    run_stalled,
)
