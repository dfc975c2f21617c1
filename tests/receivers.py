"""Real HTTP servers on loopback: a scripted webhook receiver and a fake Slack Web API."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


ENDLESS = object()


class Receiver:
    """Answers each POST with the next scripted (status, headers, body, delay); 200 when the
    script runs out. Records every request: path, headers, raw body."""

    def __init__(self):
        self.script = []
        self.requests = []
        self.endless_sent, self.endless_stopped = 0, None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, headers, payload, delay, drip = receiver.script.pop(0) if receiver.script else (200, {}, b"ok", 0, 0)
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if payload is ENDLESS:
                    return self.endless(drip)
                payload = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if not drip:
                    self.wfile.write(payload)
                for i in range(len(payload) if drip else 0):  # a byte at a time, never pausing long
                    self.wfile.write(payload[i:i + 1])
                    self.wfile.flush()
                    time.sleep(drip)

            def endless(self, pause):
                """A chunked body that never ends, until the client hangs up: 64 KiB chunks as
                fast as they go, or 256 bytes every `pause` seconds."""
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                size = 256 if pause else 65536
                chunk = b"%x\r\n%s\r\n" % (size, b"x" * size)
                try:
                    while True:
                        self.wfile.write(chunk)
                        receiver.endless_sent += size
                        if pause:
                            time.sleep(pause)
                except OSError:
                    receiver.endless_stopped = time.monotonic()
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, status, body=b"", headers=None, delay=0, drip=0):
        """Script the next answer: after `delay` seconds; with `drip`, the body a byte every
        `drip` seconds; with body ENDLESS, a chunked body that never ends (64 KiB chunks as
        fast as they go, or with `drip`, 256 bytes every `drip` seconds)."""
        self.script.append((status, headers or {}, body, delay, drip))
        return self

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class FakeSlack(Receiver):
    """chat.postMessage as Slack answers it: 200 {"ok": true} unless scripted otherwise."""

    def ok(self):
        return self.answer(200, {"ok": True, "channel": "C1", "ts": "1.2"}, {"Content-Type": "application/json"})

    def error(self, error, status=200, headers=None):
        return self.answer(status, {"ok": False, "error": error}, {"Content-Type": "application/json", **(headers or {})})

    def messages(self):
        from urllib.parse import parse_qs

        out = []
        for r in self.requests:
            ctype = r["headers"].get("Content-Type", "")
            body = json.loads(r["body"]) if "json" in ctype else {k: v[0] for k, v in parse_qs(r["body"].decode()).items()}
            if isinstance(body.get("blocks"), str):
                body["blocks"] = json.loads(body["blocks"])
            out.append({"token": r["headers"].get("Authorization", ""), "path": r["path"], **body})
        return out


class CountingReceiver:
    """A fast webhook receiver (HTTP/1.1, keep-alive, 200 after `delay` seconds) that counts
    requests by webhook-id and notes every request that arrived while another with the same
    webhook-id was still being answered: a delivery sent twice at the same time."""

    def __init__(self, delay=0.0):
        self.delay = delay
        self.lock = threading.Lock()
        self.by_id, self.in_flight, self.overlaps = {}, {}, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                delivery = self.headers.get("webhook-id", "")
                with receiver.lock:
                    receiver.by_id[delivery] = receiver.by_id.get(delivery, 0) + 1
                    if receiver.in_flight.get(delivery):
                        receiver.overlaps.append(delivery)
                    receiver.in_flight[delivery] = receiver.in_flight.get(delivery, 0) + 1
                try:
                    time.sleep(receiver.delay)
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                finally:
                    with receiver.lock:
                        receiver.in_flight[delivery] -= 1

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 1024
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def received(self):
        """(requests, distinct webhook-ids)."""
        with self.lock:
            return sum(self.by_id.values()), len(self.by_id)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
