import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

# Load the URLconf, and with it every view module, and build its reverse lookups now rather than
# in a worker's first requests (ops.preload); then keep all the objects loaded so far (about
# 100,000: Django, DRF, the apps) out of the cyclic garbage collector's full passes. A full pass
# walked them all: 70–100 ms, in about one history batch in twenty (measured in gunicorn workers,
# bench row 4). They live as long as the process anyway; garbage made from here on is collected
# as before.
from ops import preload  # noqa: E402  (after the application: Django is set up)

preload.url_resolver()
gc.collect()
gc.freeze()

# A young collection every 20,000 new container objects rather than Python's 700: what a request
# makes is freed by reference counting when it ends (an API request's own cycles are broken as
# it ends: teams.permissions), and a 5,000-value history batch, some 12,000 objects alive at once,
# set off eleven collections, 0.5 ms of each batch (timed with gc.callbacks). Cyclic garbage waits
# a little longer for its collection.
gc.set_threshold(20_000, 10, 10)
