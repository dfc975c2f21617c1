"""The one way out to webhooks: timeouts, no redirects, a User-Agent, and private, loopback and
link-local addresses refused at connect time (the resolved IP is checked and pinned, so DNS
rebinding cannot slip past) unless WEBHOOK_ALLOW_PRIVATE_IPS is on.

An attempt never outlives its deadline and never holds more than RESPONSE_READ_LIMIT bytes of
an answer: the body is streamed and reading stops at the limit or the deadline, whichever comes
first, so a receiver that answers with an endless body costs a worker nothing.
"""

import codecs
import os
import threading
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import urlsplit
from urllib.request import getproxies

import requests
from django.conf import settings
from requests_hardened import Config, Manager

try:
    VERSION = version("tripline")
except PackageNotFoundError:  # running from a tree that was not installed
    VERSION = "dev"
USER_AGENT = f"Tripline/{VERSION}"
# Enough to mask secrets echoed in the answer before the first 1 KiB of it is kept.
RESPONSE_READ_LIMIT = 64 * 1024
CHUNK = 8192


def _config():
    allow_private = settings.WEBHOOK_ALLOW_PRIVATE_IPS
    return Config(
        ip_filter_enable=not allow_private,
        ip_filter_allow_loopback_ips=allow_private,
        never_redirect=True,
        default_timeout=tuple(settings.WEBHOOK_TIMEOUT),
        user_agent_override=USER_AGENT,
    )


def session():
    """A new hardened session (its own connection pool). It reads proxies, CA bundles and netrc
    from the environment, as requests does, only when the environment holds any."""
    s = Manager(_config()).get_session()
    s.trust_env = environment_settings()
    return s


def environment_settings():
    """Whether the environment holds something requests reads when a session trusts it: a proxy
    (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY…, any case; on macOS and Windows also the
    system's proxy settings, as requests reads them with getproxies), a CA bundle variable or a
    netrc file. requests looks for them on every send, and finds nothing on most installs; in a
    fan-out that look (every environment variable, every time) was 6.5 % of the worker's CPU.
    Looked at when a thread's session is made: a worker picks up a change when it restarts."""
    return bool(getproxies() or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
                or os.environ.get("NETRC") or any(os.path.exists(os.path.expanduser(f"~/{name}")) for name in (".netrc", "_netrc")))


_local = threading.local()


def thread_session():
    """This thread's hardened session, kept between sends so that connections to a receiver are
    reused (keep-alive). The address check happens when a connection is made, so a reused one
    went to an address that was checked. A new session when the settings it was made with
    changed."""
    key = (settings.WEBHOOK_ALLOW_PRIVATE_IPS, tuple(settings.WEBHOOK_TIMEOUT))
    current = getattr(_local, "session", None)
    if current is None or current[0] != key:
        if current is not None:
            current[1].close()
        _local.session = current = (key, session())
    return current[1]


def forget_thread_session(used):
    """Drop this thread's session if it is `used`: an attempt that ran out of time may still be
    reading from one of its connections in the background, so the next send starts afresh."""
    current = getattr(_local, "session", None)
    if current is not None and current[1] is used:
        _local.session = None


class DeadlineExceeded(requests.Timeout):
    pass


def attempt_deadline():
    """The longest one attempt may take: connect and read timeout together. HTTP clients apply
    the read timeout to each read, so without this a receiver that drips a byte at a time could
    hold an attempt, and so outlive the delivery lease (`automations.lifecycle.lease`)."""
    return float(sum(settings.WEBHOOK_TIMEOUT))


def within_deadline(call, progress=None):
    """`call()`'s result, or DeadlineExceeded once the attempt deadline has passed. The call runs
    in a daemon thread. With `progress` (an object the call fills in as it goes), what has come
    by the deadline is returned when `progress.usable()` says it is enough."""
    seconds = attempt_deadline()
    outcome = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="tripline-send", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if progress is not None and progress.usable():
            progress.stop = True  # the thread stops reading at its next chunk
            return progress.snapshot()
        raise DeadlineExceeded(f"no answer within {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@dataclass
class Answer:
    """A response as far as it was read: the status and headers, and the body up to the byte
    limit or the deadline (`truncated` when more was coming)."""

    status_code: int | None = None
    headers: dict = field(default_factory=dict)
    content: bytearray = field(default_factory=bytearray)
    truncated: bool = False
    stop: bool = False

    def usable(self):
        return self.status_code is not None

    def snapshot(self):
        return Answer(self.status_code, self.headers, bytearray(self.content), truncated=True)

    def text(self):
        """The body as text; a character cut in half by the end of what was read is left out."""
        return codecs.getincrementaldecoder("utf-8")("replace").decode(bytes(self.content), final=not self.truncated)


def post(url, body: bytes, headers):
    """POST exact bytes; the Answer, read within the limits. Raises requests exceptions
    (timeouts, refused addresses) to the caller."""
    answer = Answer()
    s = thread_session()

    def send():
        with s.post(url, data=body, headers=headers, timeout=tuple(settings.WEBHOOK_TIMEOUT),
                    allow_redirects=False, stream=True) as response:
            answer.status_code, answer.headers = response.status_code, response.headers
            while not answer.stop:
                # read1: whatever has arrived, so the deadline is looked at between chunks
                chunk = response.raw.read1(CHUNK, decode_content=False)
                if not chunk:
                    # read to its end: the connection goes back to the pool for the next send
                    # (closing the response would close it)
                    response.raw.release_conn()
                    return answer
                answer.content += chunk[: RESPONSE_READ_LIMIT - len(answer.content)]
                if len(answer.content) >= RESPONSE_READ_LIMIT:
                    answer.truncated = True
                    return answer  # closing the response drops the connection and the rest
        return answer

    try:
        got = within_deadline(send, progress=answer)
    except DeadlineExceeded:
        forget_thread_session(s)
        raise
    if answer.stop:  # cut at the deadline: the send may still be reading its last chunk
        forget_thread_session(s)
    return got


def site_of(url):
    """scheme://host[:port] of a URL: where it goes, without the path, query or credentials
    that may carry a token."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}" if parts.scheme else ""


RequestException = requests.RequestException
