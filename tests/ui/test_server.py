"""The browser-fallback server refuses anything that is not our own page: plain HTTP requests."""

from __future__ import annotations

import http.client
import json
import logging
import socket

import pytest

from core.agent.config import Paths
from ui.api import Api, agent_request
from ui.server import SettingsServer, redact_path, redirect_page


@pytest.fixture
def server():
    srv = SettingsServer(Api(agent_request(Paths.default()), mode="browser"))
    srv.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def near_miss(token: str) -> str:
    """A token one character off: differs from ``token`` by construction (never equal by chance)."""
    last = "a" if token[-1] != "a" else "b"
    return token[:-1] + last


def test_near_miss_always_differs():
    assert all(near_miss(t) != t and len(near_miss(t)) == len(t) for t in ("abc", "aba", "xa", "a"))


def request(srv, method, path, *, body=None, headers=None, host=None):
    """Send exactly these headers (http.client adds nothing we do not name but Host)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=10)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", host or f"127.0.0.1:{srv.server_address[1]}")
    data = json.dumps(body).encode() if body is not None else b""
    for name, value in {**({"Content-Type": "application/json"} if body is not None else {}), **(headers or {})}.items():
        conn.putheader(name, value)
    conn.putheader("Content-Length", str(len(data)))
    conn.endheaders(data)
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    return resp, payload


def api(srv, method, body=None, **headers):
    return request(srv, "POST", f"/api/{method}", body=body if body is not None else {},
                   headers={"X-Plugback-Token": srv.token, **headers})


def test_token_is_random_per_session_and_long():
    a = SettingsServer(Api(lambda c, a: {}, mode="browser"))
    b = SettingsServer(Api(lambda c, a: {}, mode="browser"))
    try:
        assert a.token != b.token and len(a.token) >= 32
        assert a.server_address[0] == "127.0.0.1" and a.server_address[1] != b.server_address[1]
        assert a.url == f"http://127.0.0.1:{a.server_address[1]}/{a.token}/"
    finally:
        a.server_close()
        b.server_close()


def test_pages_need_the_token(server):
    resp, body = request(server, "GET", f"/{server.token}/")
    assert resp.status == 200 and b"<title>Plugback settings</title>" in body
    assert "default-src 'self'" in resp.getheader("Content-Security-Policy")
    assert resp.getheader("Content-Type").startswith("text/html")
    resp, _ = request(server, "GET", f"/{server.token}/bridge.js")
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/javascript")
    for path in ("/", "/index.html", "/bridge.js", f"/{near_miss(server.token)}/", "/api/status"):
        resp, body = request(server, "GET", path)
        assert resp.status == 403, path
        assert b"plugback-tray --settings" in body


def test_files_outside_the_web_folder_are_not_served(server):
    for path in (f"/{server.token}/../server.py", f"/{server.token}/%2e%2e/server.py", f"/{server.token}/nope.js"):
        resp, body = request(server, "GET", path)
        assert resp.status == 404, path
        assert b"import" not in body


def test_api_needs_the_token_header(server):
    assert api(server, "info")[0].status == 200
    resp, _ = request(server, "POST", "/api/info", body={})
    assert resp.status == 403
    resp, _ = request(server, "POST", "/api/info", body={}, headers={"X-Plugback-Token": near_miss(server.token)})
    assert resp.status == 403
    # The token in the path is for pages only; the API wants the header.
    resp, _ = request(server, "POST", f"/{server.token}/api/info", body={})
    assert resp.status == 403


def test_foreign_host_or_origin_is_refused(server):
    port = server.server_address[1]
    good = api(server, "info", Origin=f"http://127.0.0.1:{port}")
    assert good[0].status == 200 and json.loads(good[1])["data"]["mode"] == "browser"
    assert api(server, "info", Origin=f"http://localhost:{port}")[0].status == 200
    # DNS rebinding: the right token cannot help a page served under another name.
    for host in (f"evil.example:{port}", "127.0.0.1", f"127.0.0.1:{port + 1}"):
        resp, _ = request(server, "POST", "/api/info", body={}, host=host, headers={"X-Plugback-Token": server.token})
        assert resp.status == 403, host
        resp, _ = request(server, "GET", f"/{server.token}/", host=host)
        assert resp.status == 403, host
    for origin in ("http://evil.example", f"http://127.0.0.1:{port + 1}", "null"):
        assert api(server, "info", Origin=origin)[0].status == 403, origin
    assert api(server, "info", **{"Sec-Fetch-Site": "cross-site"})[0].status == 403
    # A tab opening the page from elsewhere (the redirect file is file://) is let in with the token,
    # a cross-site load of a script or a frame is not.
    navigate = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    assert request(server, "GET", f"/{server.token}/", headers=navigate)[0].status == 200
    assert request(server, "GET", f"/{near_miss(server.token)}/", headers=navigate)[0].status == 403
    for mode, dest in (("no-cors", "script"), ("navigate", "iframe"), ("cors", "empty")):
        headers = {**navigate, "Sec-Fetch-Mode": mode, "Sec-Fetch-Dest": dest}
        assert request(server, "GET", f"/{server.token}/bridge.js", headers=headers)[0].status == 403, (mode, dest)
    assert api(server, "info", **navigate)[0].status == 403
    resp, _ = request(server, "OPTIONS", "/api/info", headers={"Origin": "http://evil.example",
                                                                "Access-Control-Request-Method": "POST"})
    assert resp.status == 403 and resp.getheader("Access-Control-Allow-Origin") is None


def test_api_errors_are_replies_not_crashes(server):
    reply = json.loads(api(server, "no_such_method")[1])
    assert reply == {"ok": False, "code": "unknown_method", "message": reply["message"]}
    reply = json.loads(api(server, "run_job", {"nme": "x"})[1])
    assert reply["ok"] is False and reply["code"] == "bad_request"
    resp, body = request(server, "POST", "/api/info", headers={"X-Plugback-Token": server.token,
                                                               "Content-Type": "application/json"})
    assert resp.status == 200 and json.loads(body)["ok"] is True  # empty body = no arguments
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    conn.request("POST", "/api/info", body=b"{not json", headers={"X-Plugback-Token": server.token})
    assert json.loads(conn.getresponse().read())["code"] == "bad_request"
    # No agent runs in this test: a readable error, not a stack trace.
    reply = json.loads(api(server, "status")[1])
    assert reply["ok"] is False and reply["code"] == "agent_unavailable"
    assert "plugback-tray" in reply["message"] and "Traceback" not in reply["message"]


def raw_request(srv, line: bytes) -> bytes:
    """Send one raw request line (malformed on purpose) and return what came back."""
    with socket.create_connection(("127.0.0.1", srv.server_address[1]), timeout=10) as sock:
        sock.sendall(line + b"\r\n\r\n")
        return sock.recv(4096)


def test_the_log_never_holds_the_token(server, caplog):
    """Issue #10: the token was logged with every refused request, and with every request under --debug."""
    caplog.set_level(logging.DEBUG)
    token, port = server.token, server.server_address[1]
    assert request(server, "GET", f"/{token}/index.html?x=1")[0].status == 200
    assert request(server, "GET", f"/{token}")[0].status == 301
    assert request(server, "GET", f"/{token}/index.html", host=f"evil.example:{port}")[0].status == 403
    assert request(server, "GET", f"/{near_miss(token)}/")[0].status == 403
    assert api(server, "info")[0].status == 200
    assert b"Error code: 400" in raw_request(server, f"GET /{token}/ HTTP/{token}".encode())
    text = caplog.text
    assert token not in text and near_miss(token) not in text
    # ...yet the log still says what happened.
    assert "GET /…/index.html 200" in text and "GET /…/ 301" in text
    assert "refused GET /…/index.html: foreign Host header" in text
    assert "refused GET /…/: missing or wrong token" in text
    assert "POST /api/info 200" in text
    assert "Bad request version ('HTTP/<token>')" in text


def test_redact_path():
    assert redact_path("/secret/pages/jobs.js?v=2") == "/…/pages/jobs.js"
    assert redact_path("/secret") == "/…/" and redact_path("/") == "/" and redact_path("") == "/"
    assert redact_path("/api/status") == "/api/status"


def test_the_redirect_file_takes_the_browser_to_the_pages(server, chromium_browser, tmp_path):
    """The browser is given a local file, not the address: Chromium follows it to the token's page."""
    page_file = tmp_path / "open.html"
    page_file.write_bytes(redirect_page(server.url + "#restore"))
    context = chromium_browser.new_context()
    try:
        page = context.new_page()
        page.goto(page_file.as_uri())
        page.wait_for_url(server.url + "#restore", timeout=15000)
        # The app's own page (it has scripts; the redirect page has none), titled by the app.
        page.wait_for_selector("script[src]", state="attached")
        assert page.title().endswith("Plugback settings")
    finally:
        context.close()
    assert b'href="http://x/?a=1&amp;b=2"' in redirect_page("http://x/?a=1&b=2")
    assert b'href="http://x/&quot;&gt;"' in redirect_page('http://x/">')
