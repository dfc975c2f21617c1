from django.dispatch import Signal

# Sent inside the transaction of a history batch, once per batch:
# run, keys (sorted list), first_step, last_step, rows (int), user.
history_logged = Signal()
