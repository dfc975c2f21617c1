"""The action kinds: one definition per kind, registered by its name.

A definition (a subclass of `base.ActionKind`, one module each) owns its fields and their
validation (API, admin form and OpenAPI schema are built from `fields`), the integration kind it
sends through, how it builds its message (the payload, masked and real), anything it must do
before sending (Slack's per-channel pace) and its admin preview. Sending itself is always
`actions.transports.send` (secret masking lives there), through the transport of the kind's
name; how a response is classified (retry, fail, disable) is that transport's. Nothing outside
this package branches on an action kind (tests/test_definitions.py greps for it).
"""

KINDS = {}


def register(cls):
    KINDS[cls.name] = cls()
    return cls


def get(name):
    return KINDS[name]


def silent():
    """The kinds that send nothing (their executions succeed at once and cannot be redelivered)."""
    return [name for name, kind in KINDS.items() if not kind.sends]


def admin_form_fields():
    """{admin form field name: Django form field} for every field of every kind."""
    from ..spec import build_form_fields

    return build_form_fields(kind.fields for kind in KINDS.values())


def field_declarations():
    """{field: spec Field} over the kinds (the first declaring each name)."""
    from ..spec import declarations

    return declarations(kind.fields for kind in KINDS.values())


def form_fields():
    """{action kind: [admin form field names]}."""
    return {name: sorted(kind.fields) for name, kind in KINDS.items()}


from . import no_op, slack, webhook  # noqa: E402,F401  (each module registers its definition)
