"""TLS verification and proxies, against an HTTPS emulator with a trustme CA.

- verification is on by default: a certificate from an unknown CA fails with a
  scenario_uni1.ConnectionError that says it is a certificate/TLS problem, and
  nothing is paid for;
- the CA can come from ca_bundle=, SSL_CERT_FILE or CURL_CA_BUNDLE (in that
  order), and it covers the CDN as well as the API;
- proxy= and the standard proxy variables (http_proxy, https_proxy, no_proxy)
  route every request, API and CDN, through a forward proxy; the proxy here is a
  small CONNECT-and-plain-HTTP one written for the test, which records what it
  was asked to carry.
"""

from __future__ import annotations

import os
import selectors
import socket
import ssl
import threading
from urllib.parse import urlsplit

import pytest
import trustme

import scenario_uni1 as uni1
from scenario_uni1.emulator import Emulator

PROXY_VARS = (
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
)
CA_VARS = ("SSL_CERT_FILE", "CURL_CA_BUNDLE", "SSL_CERT_DIR")


@pytest.fixture(autouse=True)
def _clean_tls_environment(monkeypatch):
    for name in PROXY_VARS + CA_VARS:
        monkeypatch.delenv(name, raising=False)


# ------------------------------------------------------------------ certificates


def _server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    good, other = trustme.CA(), trustme.CA()
    good_pem, other_pem = d / "good-ca.pem", d / "other-ca.pem"
    good.cert_pem.write_to_path(str(good_pem))
    other.cert_pem.write_to_path(str(other_pem))
    return {"good": good, "other": other, "good_pem": str(good_pem), "other_pem": str(other_pem)}


@pytest.fixture(scope="module")
def tls_emu_module(pki):
    ctx = _server_context(pki["good"], "127.0.0.1")
    with Emulator(ssl_context=ctx, cdn_ssl_context=ctx, job_duration=0) as emu:
        yield emu


@pytest.fixture
def tls_emu(tls_emu_module):
    tls_emu_module.reset()
    tls_emu_module.job_duration = 0
    return tls_emu_module


def _round_trip(client, tmp_path):
    """Submit, wait, fetch into memory and to disk: every kind of request."""
    job = client.generate("over TLS")
    job.wait(timeout=20)
    (img,) = job.images()
    assert img.data.startswith(b"\x89PNG")
    (path,) = job.download(tmp_path)
    assert path.read_bytes() == img.data
    return job


def _assert_tls_message(exc):
    text = str(exc).lower()
    assert any(w in text for w in ("certificate", "tls", "ssl")), str(exc)


# ================================================================== verification


def test_emulator_streams_assets_over_tls(pki):
    # No workaround here: the emulator as shipped must serve CDN assets over
    # HTTPS promptly. It stalls (asyncio SSL flow control, see the fixture
    # above), often but not always, so several fresh connections are tried.
    ctx = _server_context(pki["good"], "127.0.0.1")
    with Emulator(
        ssl_context=ctx, cdn_ssl_context=ctx, job_duration=0, asset_size_bytes=3_000_000
    ) as emu:
        with emu.client(ca_bundle=pki["good_pem"]) as c:
            job = c.generate("stream me")
            job.wait(timeout=10)
        for attempt in range(6):
            with emu.client(ca_bundle=pki["good_pem"], max_retries=0) as c:  # new connections
                try:
                    (img,) = c.job(job.id).images(timeout=2)
                except uni1.TimeoutError:
                    pytest.fail(
                        f"the emulator stalled a CDN transfer over TLS (attempt {attempt + 1})"
                    )
                assert img.data.startswith(b"\x89PNG")


def test_urls_are_https(tls_emu):
    assert tls_emu.url.startswith("https://127.0.0.1:")
    assert tls_emu.cdn_url.startswith("https://127.0.0.1:")


def test_trusted_with_ca_bundle_works_end_to_end(tls_emu, pki, tmp_path):
    with tls_emu.client(ca_bundle=pki["good_pem"], timeout=10.0) as c:
        _round_trip(c, tmp_path)
        images = c.run("and once more through run()", timeout=20)
        assert len(images) == 1
    assert tls_emu.jobs_created == 2
    assert tls_emu.request_count(origin="cdn") >= 3


def test_ca_bundle_accepts_a_path_object(tls_emu, pki, tmp_path):
    import pathlib

    with tls_emu.client(ca_bundle=pathlib.Path(pki["good_pem"])) as c:
        assert c.list_jobs() == ([], None)


def test_untrusted_certificate_is_a_clear_connection_error(tls_emu):
    with tls_emu.client(max_retries=2, timeout=10.0) as c:
        with pytest.raises(uni1.ConnectionError) as info:
            c.generate("never reaches the server")
        _assert_tls_message(info.value)
        assert not isinstance(info.value, uni1.SubmissionUncertainError)
        with pytest.raises(uni1.ConnectionError) as info:
            c.job("job_abc")
        _assert_tls_message(info.value)
    assert tls_emu.jobs_created == 0
    assert tls_emu.requests == []  # the handshake failed: no request was ever read


def test_certificate_from_another_ca_is_refused(tls_emu, pki):
    with tls_emu.client(ca_bundle=pki["other_pem"], max_retries=0) as c:
        with pytest.raises(uni1.ConnectionError) as info:
            c.generate("wrong CA")
        _assert_tls_message(info.value)
    assert tls_emu.jobs_created == 0


def test_hostname_mismatch_is_refused(pki):
    ctx = _server_context(pki["good"], "api.example.test")  # not 127.0.0.1
    with Emulator(ssl_context=ctx, cdn_ssl_context=ctx, job_duration=0) as emu:
        with emu.client(ca_bundle=pki["good_pem"], max_retries=0) as c:
            with pytest.raises(uni1.ConnectionError) as info:
                c.generate("wrong name")
            _assert_tls_message(info.value)
        assert emu.jobs_created == 0


def test_untrusted_cdn_fails_the_download_cleanly(pki, tmp_path):
    # The API is trusted; the CDN's certificate comes from another CA.
    api_ctx = _server_context(pki["good"], "127.0.0.1")
    cdn_ctx = _server_context(pki["other"], "127.0.0.1")
    with Emulator(ssl_context=api_ctx, cdn_ssl_context=cdn_ctx, job_duration=0) as emu:
        with emu.client(ca_bundle=pki["good_pem"], max_retries=1) as c:
            job = c.generate("cdn untrusted")
            job.wait(timeout=10)
            with pytest.raises(uni1.ConnectionError) as info:
                job.images()
            _assert_tls_message(info.value)
            dest = tmp_path / "out"
            with pytest.raises(uni1.ConnectionError):
                job.download(dest)
            assert os.listdir(dest) == []
        assert emu.jobs_created == 1
        assert emu.request_count(origin="cdn") == 0


def test_missing_ca_bundle_file_is_an_error_not_a_fallback(tls_emu, tmp_path):
    missing = str(tmp_path / "no-such-ca.pem")
    with pytest.raises((uni1.ConfigurationError, uni1.ConnectionError)) as info:
        with tls_emu.client(ca_bundle=missing, max_retries=0) as c:
            c.job("job_abc")
    assert tls_emu.jobs_created == 0 and tls_emu.requests == []
    assert isinstance(info.value, uni1.Uni1Error)


# ================================================================== CA from the environment


@pytest.mark.parametrize("var", ["SSL_CERT_FILE", "CURL_CA_BUNDLE"])
def test_ca_from_the_environment(tls_emu, pki, tmp_path, monkeypatch, var):
    monkeypatch.setenv(var, pki["good_pem"])
    with tls_emu.client(timeout=10.0) as c:  # read when the client is made
        _round_trip(c, tmp_path)
    assert tls_emu.jobs_created == 1


@pytest.mark.parametrize("var", ["SSL_CERT_FILE", "CURL_CA_BUNDLE"])
def test_wrong_ca_in_the_environment_is_refused(tls_emu, pki, monkeypatch, var):
    monkeypatch.setenv(var, pki["other_pem"])
    with tls_emu.client(max_retries=0) as c, pytest.raises(uni1.ConnectionError):
        c.generate("env says another CA")
    assert tls_emu.jobs_created == 0


def test_explicit_ca_bundle_wins_over_the_environment(tls_emu, pki, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", pki["other_pem"])
    monkeypatch.setenv("CURL_CA_BUNDLE", pki["other_pem"])
    with tls_emu.client(ca_bundle=pki["good_pem"]) as c:
        c.generate("explicit wins")
    assert tls_emu.jobs_created == 1


@pytest.mark.parametrize("first_ok", [True, False])
def test_ssl_cert_file_comes_before_curl_ca_bundle(tls_emu, pki, monkeypatch, first_ok):
    good, bad = pki["good_pem"], pki["other_pem"]
    monkeypatch.setenv("SSL_CERT_FILE", good if first_ok else bad)
    monkeypatch.setenv("CURL_CA_BUNDLE", bad if first_ok else good)
    with tls_emu.client(max_retries=0) as c:
        if first_ok:
            c.generate("SSL_CERT_FILE first")
        else:
            with pytest.raises(uni1.ConnectionError):
                c.generate("SSL_CERT_FILE first")
    assert tls_emu.jobs_created == (1 if first_ok else 0)


# ================================================================== proxies


class ForwardProxy:
    """A forward proxy on 127.0.0.1: CONNECT tunnels, and plain absolute-form HTTP
    requests forwarded one per connection. Records (method, target, headers)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.seen = []
        self._lock = threading.Lock()
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self._stop = True
        self.sock.close()

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        up = None
        try:
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, rest = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ")
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            with self._lock:
                self.seen.append((method, target, headers))
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                up = socket.create_connection((host, int(port)), timeout=10)
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    up.sendall(rest)
            else:
                u = urlsplit(target)
                up = socket.create_connection((u.hostname, u.port or 80), timeout=10)
                need = int(headers.get("content-length", "0"))
                while len(rest) < need:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    rest += chunk
                keep = [
                    ln
                    for ln in lines[1:]
                    if not ln.lower().startswith(("proxy-connection:", "connection:"))
                ]
                path = (u.path or "/") + ("?" + u.query if u.query else "")
                out = [f"{method} {path} {version}"] + keep + ["Connection: close", "", ""]
                up.sendall("\r\n".join(out).encode("latin-1") + rest)
            self._pipe(conn, up)
        except OSError:
            pass
        finally:
            conn.close()
            if up is not None:
                up.close()

    @staticmethod
    def _pipe(a, b):
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while True:
                for key, _ in sel.select(timeout=30):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        finally:
            sel.close()

    def targets(self, method=None):
        with self._lock:
            return [t for m, t, _ in self.seen if method is None or m == method]


@pytest.fixture
def proxy():
    p = ForwardProxy()
    yield p
    p.close()


def _port(url):
    return urlsplit(url).port


def test_proxy_argument_routes_api_and_cdn_over_http(emu, proxy, tmp_path):
    emu.job_duration = 0
    with emu.client(proxy=proxy.url, timeout=10.0) as c:
        job = _round_trip(c, tmp_path)
    api_port, cdn_port = _port(emu.url), _port(emu.cdn_url)
    carried = proxy.targets()
    # Every request the emulator saw came through the proxy.
    assert len(carried) == len(emu.requests) >= 5
    assert all(t.startswith("http://127.0.0.1:") for t in carried)
    assert any(
        _port(t) == api_port and t.endswith("/v1/generate/custom/model_luma-uni-1-max")
        for t in carried
    )
    assert any(_port(t) == api_port and f"/v1/jobs/{job.id}" in t for t in carried)
    cdn = [(t, h) for m, t, h in proxy.seen if _port(t) == cdn_port]
    assert len(cdn) == 2
    assert all("authorization" not in h for _, h in cdn)  # plain HTTP: the proxy sees headers
    assert emu.jobs_created == 1


def test_http_proxy_variable_is_honoured(emu, proxy, monkeypatch, tmp_path):
    emu.job_duration = 0
    monkeypatch.setenv("http_proxy", proxy.url)
    with emu.client(timeout=10.0) as c:
        _round_trip(c, tmp_path)
    assert len(proxy.targets()) == len(emu.requests) >= 5
    assert emu.jobs_created == 1


def test_no_proxy_variable_is_honoured(emu, proxy, monkeypatch, tmp_path):
    emu.job_duration = 0
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with emu.client(timeout=10.0) as c:
        _round_trip(c, tmp_path)
    assert proxy.targets() == []
    assert emu.jobs_created == 1


def test_no_proxy_star_with_an_explicit_proxy_still_works(emu, proxy, monkeypatch):
    monkeypatch.setenv("no_proxy", "*")
    with emu.client(proxy=proxy.url) as c:
        c.list_jobs()
    # libcurl applies no_proxy to CURLOPT_PROXY too: either answer is defensible,
    # but the request must have succeeded and been counted once.
    assert len(emu.requests) == 1
    assert len(proxy.targets()) in (0, 1)


def test_proxy_argument_tunnels_https(tls_emu, pki, proxy, tmp_path):
    with tls_emu.client(proxy=proxy.url, ca_bundle=pki["good_pem"], timeout=10.0) as c:
        _round_trip(c, tmp_path)
    tunnels = proxy.targets("CONNECT")
    assert tunnels and proxy.targets() == tunnels  # nothing went in the clear
    assert f"127.0.0.1:{tls_emu.port}" in tunnels
    assert f"127.0.0.1:{tls_emu.cdn_port}" in tunnels
    assert tls_emu.jobs_created == 1


@pytest.mark.parametrize("var", ["https_proxy", "HTTPS_PROXY", "all_proxy"])
def test_https_proxy_variables_are_honoured(tls_emu, pki, proxy, monkeypatch, tmp_path, var):
    monkeypatch.setenv(var, proxy.url)
    with tls_emu.client(ca_bundle=pki["good_pem"], timeout=10.0) as c:
        _round_trip(c, tmp_path)
    tunnels = proxy.targets("CONNECT")
    assert f"127.0.0.1:{tls_emu.port}" in tunnels and f"127.0.0.1:{tls_emu.cdn_port}" in tunnels
    assert tls_emu.jobs_created == 1


def test_tls_is_still_verified_through_a_proxy(tls_emu, proxy):
    with tls_emu.client(proxy=proxy.url, max_retries=0) as c:  # no CA for the emulator
        with pytest.raises(uni1.ConnectionError) as info:
            c.generate("through a proxy, untrusted")
        _assert_tls_message(info.value)
    assert proxy.targets("CONNECT")
    assert tls_emu.jobs_created == 0


def test_unreachable_proxy_is_a_connection_error_and_nothing_is_paid(emu):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with emu.client(proxy=f"http://127.0.0.1:{port}", max_retries=1) as c:
        with pytest.raises(uni1.ConnectionError) as info:
            c.generate("no proxy there")
        assert not isinstance(info.value, uni1.SubmissionUncertainError)
    assert emu.jobs_created == 0 and emu.requests == []
