from actions.transports import Message


class ActionKind:
    name = ""
    fields = {}  # {field: spec Field}
    sends = True  # False: nothing to deliver (the execution is done when created)
    integration_kind = None  # the kind of integration it needs, if any

    def parse(self, team, data, reader):
        """(integration, config) from the API/admin data; errors go to `reader`."""
        raise NotImplementedError

    def resolve(self, team, data, reader):
        from ..spec import resolve_integration

        return resolve_integration(team, data.get("integration"), self.integration_kind, reader)

    def message(self, execution, context):
        """The Message to send for `execution`, given its payload variables."""
        return Message(delivery_id=execution.delivery_id)

    def wait_turn(self, execution):
        """Before an attempt: False to send now; True when it has put the execution off (or
        finished it) through the lifecycle instead."""
        return False

    def preview(self, automation, context):
        """What the admin's preview shows for `automation` with a sample event's `context`:
        {"kind": "payload" | "slack", "preview": …} with secrets masked, or None when it sends nothing."""
        return None
