import json

from actions.models import IntegrationKind
from actions.payloads import MASK, VARIABLES, render, unknown_variables
from actions.transports import Message
from teams.api_input import refusal

from ..models import ActionType
from ..spec import MAX_PAYLOAD, Integration, Payload
from . import register
from .base import ActionKind


@register
class Webhook(ActionKind):
    """POST a JSON payload rendered from a template (secrets by name), signed (Standard Webhooks)."""

    name = ActionType.WEBHOOK
    fields = {
        "integration": Integration(help="The integration the action sends through (of the action's kind)."),
        "payload": Payload(help="WEBHOOK: a JSON template. Variables: " + ", ".join("${" + v + "}" for v in VARIABLES)
                           + ", and the webhook's secrets by name (${ACCESS_TOKEN}, ${SECRET_NAME})."),
    }
    integration_kind = IntegrationKind.WEBHOOK

    def parse(self, team, data, r):
        integration = self.resolve(team, data, r)
        config = {}
        payload = data.get("payload")
        if not isinstance(payload, (dict, list)):
            r.fail("payload", "Required: a JSON object (the payload template).")
        else:
            unstorable = refusal(payload, "payload")  # the admin's JSON text has not met the API's parser
            if unstorable:
                r.fail("payload", unstorable)
            elif len(json.dumps(payload)) > MAX_PAYLOAD:
                r.fail("payload", f"At most {MAX_PAYLOAD} bytes.")
            names = integration.attached_secrets().keys() if integration else ()
            unknown = unknown_variables(payload, names)
            if unknown:
                r.fail("payload", f"Unknown variables: {', '.join('${' + n + '}' for n in unknown)}. "
                                  f"Known: the payload variables and this webhook's secrets ({', '.join(sorted(names)) or 'none attached'}).")
            config["payload"] = payload
        return integration, config

    def message(self, execution, context):
        automation = execution.automation
        attached = automation.integration.attached_secrets()
        real = {name: secret.value for name, secret in attached.items()}
        template = automation.action_config.get("payload", {})
        return Message(
            delivery_id=execution.delivery_id,
            payload=render(template, context, real),
            masked_payload=render(template, context, {name: MASK for name in attached}),
            secret_values=tuple(real.values()),
        )

    def preview(self, automation, context):
        masks = {name: MASK for name in automation.integration.attached_secrets()} if automation.integration else {}
        return {"kind": "payload", "preview": render(automation.action_config.get("payload", {}), context, masks)}
