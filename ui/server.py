"""The browser fallback: the settings pages served on 127.0.0.1 to the default browser.

Used when no webview backend can start (no display libraries, a headless ssh
session) or when asked for with ``--browser``. Security model: the server
listens on 127.0.0.1 only, on a random port, and every request must carry a
random per-session token, so another local user or a web page cannot drive it:

* static files are served under ``/<token>/`` (the page's relative URLs keep
  the token, since ``<script src>`` cannot carry a header);
* the API is ``POST /api/<method>`` with the token in the ``X-Plugback-Token``
  header and a JSON body. A custom header cannot be sent cross-origin without
  a CORS preflight, which this server refuses;
* a Host header other than ``127.0.0.1:<port>`` / ``localhost:<port>``
  (DNS rebinding) or a foreign Origin is refused with 403.

The token must never reach a place another local user can read (issue #10): the
browser is sent to a user-only file holding a redirect (:func:`redirect_page`,
written by ``ui.window``), not given the address on its command line, and the
log sees request paths only through :func:`redact_path`.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import mimetypes
import secrets
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ui.api import Api

log = logging.getLogger(__name__)

WEB_ROOT = Path(__file__).resolve().parent / "web"
TOKEN_HEADER = "X-Plugback-Token"
MAX_BODY = 1 << 20
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml",
          ".png": "image/png", ".ico": "image/x-icon", ".json": "application/json"}
# The pages use only their own scripts and styles; nothing is loaded from elsewhere.
_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'"


def redact_path(path: str) -> str:
    """A request path fit for the log: the first segment (where the token goes) and the query left out."""
    first, _, rest = path.split("?", 1)[0].lstrip("/").partition("/")
    if first == "api":
        return f"/api/{rest[:60]}"
    return f"/…/{rest[:60]}" if first else "/"


def redirect_page(url: str) -> bytes:
    """A tiny HTML page that sends the browser on to ``url`` (the address with the token).

    The browser is given this page's file name instead of the address, so the token
    is on no command line (``/proc/<pid>/cmdline`` is readable by every local user).
    """
    href = html.escape(url, quote=True)
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">'
            f'<meta http-equiv="refresh" content="0;url={href}"><title>Plugback settings</title></head>'
            f'<body><p><a href="{href}">Open the Plugback settings</a></p></body></html>\n').encode()


class SettingsServer(ThreadingHTTPServer):
    """Serves ``ui/web`` and the API for one browser session on 127.0.0.1."""

    daemon_threads = True

    def __init__(self, api: Api, *, port: int = 0, token: str | None = None, web_root: Path = WEB_ROOT,
                 idle_timeout: float | None = None):
        super().__init__(("127.0.0.1", port), _Handler)
        self.api = api
        self.token = token or secrets.token_urlsafe(24)
        self.web_root = Path(web_root).resolve()
        self.idle_timeout = idle_timeout
        self.last_request = time.monotonic()
        self.closing = threading.Event()   # set to end serve_until_idle
        port = self.server_address[1]
        self.allowed_hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
        self.allowed_origins = {f"http://{host}" for host in self.allowed_hosts}

    @property
    def url(self) -> str:
        """The address to open: it holds the session token."""
        return f"http://127.0.0.1:{self.server_address[1]}/{self.token}/"

    def start(self) -> threading.Thread:
        """Serve in a background thread (tests, and the window process's main loop)."""
        thread = threading.Thread(target=self.serve_forever, name="settings-http", daemon=True)
        thread.start()
        return thread

    def serve_until_idle(self) -> None:
        """Serve until no request came for ``idle_timeout`` seconds (the tab was closed).

        An open page polls ``status`` every few seconds (throttled to about once a
        minute in a background tab), so silence means nobody is looking.
        """
        self.start()
        while self.idle_timeout is None or time.monotonic() - self.last_request < self.idle_timeout:
            if self.closing.wait(1.0):
                break
        else:
            log.info("no request for %s s: closing the settings server", self.idle_timeout)
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: SettingsServer
    protocol_version = "HTTP/1.1"

    # Request lines hold the token (pages live under /<token>/): the log sees redacted paths only.

    def log_request(self, code="-", size="-") -> None:
        # path is unset when the request line could not be parsed
        log.debug("%s %s %s %s", self.address_string(), self.command, redact_path(getattr(self, "path", "")), code)

    def log_message(self, fmt, *args) -> None:  # errors (a malformed request line...): to logging, not stderr
        text = (fmt % args).replace(self.server.token, "<token>")
        log.debug("%s %s", self.address_string(), text)

    # -- checks ------------------------------------------------------------

    def _foreign(self) -> str | None:
        """Why this request does not come from our own page, or None."""
        if self.headers.get("Host", "") not in self.server.allowed_hosts:
            return "foreign Host header"
        origin = self.headers.get("Origin")
        if origin is not None and origin not in self.server.allowed_origins:
            return "foreign Origin header"
        if self.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none") \
                and not self._opening_the_page():
            return "cross-site request"
        return None

    def _opening_the_page(self) -> bool:
        """A browser tab opening a page (the redirect file is a file:// page, so "cross-site").

        Harmless: it still needs the token, and the page cannot be framed (CSP frame-ancestors).
        """
        return (self.command == "GET" and self.headers.get("Sec-Fetch-Mode") == "navigate"
                and self.headers.get("Sec-Fetch-Dest") == "document")

    def _token_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.server.token.encode())

    # -- replies -----------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", _CSP)
        self.end_headers()
        self.wfile.write(body)

    def _refuse(self, why: str) -> None:
        log.warning("refused %s %s: %s", self.command, redact_path(self.path), why)
        self._send(HTTPStatus.FORBIDDEN, b"Forbidden. Open the address that 'plugback-tray --settings' printed.\n",
                   "text/plain; charset=utf-8")

    def _json(self, reply: dict) -> None:
        self._send(HTTPStatus.OK, json.dumps(reply).encode(), "application/json")

    # -- methods -----------------------------------------------------------

    def do_GET(self) -> None:
        self.server.last_request = time.monotonic()
        why = self._foreign()
        if why:
            return self._refuse(why)
        parts = self.path.split("?", 1)[0].lstrip("/").split("/", 1)
        if not self._token_ok(parts[0]):
            return self._refuse("missing or wrong token")
        if len(parts) == 1:  # "/<token>" -> "/<token>/" so relative URLs keep the token
            self.send_response(HTTPStatus.MOVED_PERMANENTLY)
            self.send_header("Location", f"/{parts[0]}/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        relative = parts[1] or "index.html"
        path = (self.server.web_root / relative).resolve()
        if not path.is_relative_to(self.server.web_root) or not path.is_file():
            return self._send(HTTPStatus.NOT_FOUND, b"Not found\n", "text/plain; charset=utf-8")
        content_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if content_type.startswith("text/"):
            content_type += "; charset=utf-8"
        self._send(HTTPStatus.OK, path.read_bytes(), content_type)

    def do_POST(self) -> None:
        self.server.last_request = time.monotonic()
        why = self._foreign()
        if why:
            return self._refuse(why)
        if not self._token_ok(self.headers.get(TOKEN_HEADER)):
            return self._refuse("missing or wrong token")
        if not self.path.startswith("/api/"):
            return self._send(HTTPStatus.NOT_FOUND, b"Not found\n", "text/plain; charset=utf-8")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"Too large\n", "text/plain; charset=utf-8")
        try:
            args = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self._json({"ok": False, "code": "bad_request", "message": "The request was not valid JSON."})
        self._json(self.server.api.call(self.path[len("/api/"):], args))

    def do_OPTIONS(self) -> None:
        # No CORS: a preflight means another origin is asking.
        self._refuse("cross-origin preflight")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS
