from django.dispatch import Signal

# Sent after the transaction that recorded an event commits: event_id. The automations app
# subscribes to it (events never imports automations).
event_committed = Signal()

