from django.dispatch import Signal

# Sent after the transaction that recorded an event commits: event_id. The automations app
# subscribes to it (events never imports automations).
event_committed = Signal()

# Sent inside the transaction that records an event, just after it is written: event_id. For
# work that must commit (or roll back) with the event, such as a task queued in the same database.
event_recorded = Signal()
