from django.dispatch import Signal

# Sent inside the transaction of a history batch, once per batch:
# run, keys (sorted list), first_step, last_step, top_step (the highest step the run holds of
# those keys, the batch's included), rows (int), user.
history_logged = Signal()
