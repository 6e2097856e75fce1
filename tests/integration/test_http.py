"""HTTP behaviour of `vie serve` (the default app) over real sockets."""

import calendar
import hashlib
import http.client
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

from vietest import (
    HOST,
    SANITIZED,
    RawConn,
    VieTestCase,
    exchange,
    get,
    scaled,
    start_server,
)

HELLO = b"Hello, World!"
CURL = shutil.which("curl")


def http_conn(port):
    return http.client.HTTPConnection(HOST, port, timeout=scaled(10))


def parse_http_date(s):
    """RFC 9110 IMF-fixdate -> epoch seconds (raises on another format)."""
    t = time.strptime(s, "%a, %d %b %Y %H:%M:%S GMT")
    return calendar.timegm(t)


class TestRoutes(VieTestCase):
    def setUp(self):
        self.srv = start_server(self)
        self.port = self.srv.port

    def test_get_root(self):
        c = http_conn(self.port)
        self.addCleanup(c.close)
        c.request("GET", "/")
        r = c.getresponse()
        body = r.read()
        self.assertEqual(r.status, 200)
        self.assertEqual(body, HELLO)
        self.assertEqual(r.getheader("Content-Type"), "text/plain; charset=utf-8")
        self.assertEqual(r.getheader("Content-Length"), "13")

    def test_healthz_json(self):
        r = get(self.port, "/healthz")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Type"), "application/json")
        self.assertEqual(r.json(), {"status": "ok"})

    def test_query_string_ignored_by_routing(self):
        r = get(self.port, "/?a=1&b=two")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, HELLO)

    def test_echo_body_and_content_type(self):
        c = http_conn(self.port)
        self.addCleanup(c.close)
        payload = b'{"x": [1, 2, 3], "s": "\xc3\xa9"}'
        c.request("POST", "/echo", body=payload, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.read(), payload)
        self.assertEqual(r.getheader("Content-Type"), "application/json")

    def test_echo_default_content_type_and_empty_body(self):
        r, c = exchange(self.port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        c.close()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"")
        self.assertEqual(r.header("Content-Length"), "0")
        self.assertEqual(r.header("Content-Type"), "application/octet-stream")

    def test_echo_binary_body(self):
        payload = bytes(range(256)) * 64  # 16 KiB, every byte value
        req = (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n\r\n" % len(payload)
        ) + payload
        r, c = exchange(self.port, req)
        c.close()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, payload)

    def test_404_problem(self):
        r = get(self.port, "/nope")
        doc = self.assert_problem(r, 404)
        self.assertEqual(doc["title"], "Not Found")
        self.assertEqual(doc["type"], "about:blank")

    def test_405_problem_with_allow(self):
        for method, path, allow in (
            ("DELETE", "/", "GET, HEAD"),
            ("POST", "/", "GET, HEAD"),
            ("PUT", "/healthz", "GET, HEAD"),
            ("GET", "/echo", "POST"),
        ):
            with self.subTest(method=method, path=path):
                req = b"%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n" % (
                    method.encode(),
                    path.encode(),
                )
                r, c = exchange(self.port, req)
                c.close()
                doc = self.assert_problem(r, 405)
                self.assertEqual(doc["title"], "Method Not Allowed")
                self.assertEqual(r.header("Allow"), allow)

    def test_head_root(self):
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response("HEAD")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Length"), "13")
        self.assertEqual(r.header("Content-Type"), "text/plain; charset=utf-8")
        # No body: the next bytes on the connection are the next response.
        c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        r2 = c.read_response()
        self.assertEqual(r2.status, 200, "a HEAD body leaked into the next response?")
        self.assertEqual(r2.json(), {"status": "ok"})

    def test_head_404_has_no_body(self):
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(b"HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response("HEAD")
        self.assertEqual(r.status, 404)
        r2 = c.read_response()
        self.assertEqual((r2.status, r2.body), (200, HELLO))

    def test_date_header(self):
        before = time.time()
        r = get(self.port, "/")
        after = time.time()
        dates = r.header_all("Date")
        self.assertEqual(len(dates), 1, r)
        self.assertRegex(
            dates[0],
            r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
            r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$",
        )
        t = parse_http_date(dates[0])
        self.assertGreaterEqual(t, int(before) - 2)
        self.assertLessEqual(t, after + 2)
        # The weekday must match the date.
        self.assertEqual(time.strftime("%a", time.gmtime(t)), dates[0][:3])

    def test_error_responses_have_date(self):
        r = get(self.port, "/nope")
        self.assertIsNotNone(r.header("Date"))


class TestConnectionManagement(VieTestCase):
    def setUp(self):
        self.srv = start_server(self)
        self.port = self.srv.port

    def test_keepalive_http_client(self):
        c = http_conn(self.port)
        self.addCleanup(c.close)
        sock = None
        for i in range(10):
            path = "/" if i % 2 == 0 else "/healthz"
            c.request("GET", path)
            r = c.getresponse()
            body = r.read()
            self.assertEqual(r.status, 200)
            self.assertFalse(r.will_close, "response %d asked to close" % i)
            self.assertIsNone(r.getheader("Connection"))
            if i % 2 == 0:
                self.assertEqual(body, HELLO)
            else:
                self.assertEqual(body, b'{"status":"ok"}')
            if sock is None:
                sock = c.sock
            self.assertIs(c.sock, sock, "http.client had to reconnect at request %d" % i)

    def test_keepalive_raw_many(self):
        c = RawConn(self.port)
        self.addCleanup(c.close)
        for i in range(50):
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, HELLO))
        self.assert_open(c)

    def test_connection_close_honoured(self):
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, HELLO))
        self.assertTrue(r.has_token("Connection", "close"), r)
        self.assert_closed(c)
        self.assertEqual(bytes(c.buf), b"", "bytes after the response")

    def test_connection_close_token_in_list(self):
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, Close\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertTrue(r.has_token("Connection", "close"), r)
        self.assert_closed(c)

    def test_connection_close_stops_pipeline(self):
        # The request after a "Connection: close" one must not be answered.
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        r = c.read_response()
        self.assertEqual(r.body, HELLO)
        self.assert_closed(c)
        self.assertEqual(bytes(c.buf), b"", "a request after Connection: close was answered")

    def test_http10_closes_by_default(self):
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(b"GET / HTTP/1.0\r\n\r\n")
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, HELLO))
        self.assertEqual(r.version, "HTTP/1.1")  # RFC 9110 2.5: our highest minor version
        self.assertFalse(r.has_token("Connection", "keep-alive"), r)
        self.assert_closed(c)

    def test_http10_keepalive(self):
        c = RawConn(self.port)
        self.addCleanup(c.close)
        for i in range(3):
            c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, HELLO))
            self.assertTrue(r.has_token("Connection", "keep-alive"), r)
            self.assertEqual(r.header("Content-Length"), "13")
        self.assert_open(c)
        # Without the token the next 1.0 request closes.
        c.send(b"GET /healthz HTTP/1.0\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assert_closed(c)

    def test_http10_post_echo(self):
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(b"POST /echo HTTP/1.0\r\nContent-Length: 5\r\nContent-Type: text/x\r\n\r\nhello")
        r = c.read_response()
        self.assertEqual((r.status, r.body, r.header("Content-Type")), (200, b"hello", "text/x"))
        self.assert_closed(c)

    def test_pipeline_100_in_one_send(self):
        reqs = []
        for i in range(100):
            if i % 2 == 0:
                reqs.append(b"GET /?i=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            else:
                reqs.append(b"GET /healthz?i=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
        c = RawConn(self.port, timeout=scaled(10))
        self.addCleanup(c.close)
        c.send(b"".join(reqs))
        for i in range(100):
            r = c.read_response()
            self.assertEqual(r.status, 200, "response %d" % i)
            want = HELLO if i % 2 == 0 else b'{"status":"ok"}'
            self.assertEqual(r.body, want, "response %d out of order" % i)
        self.assert_open(c)
        self.assertEqual(bytes(c.buf), b"")

    def test_pipeline_mixed_methods_and_bodies(self):
        reqs = []
        want = []
        for i in range(60):
            k = i % 4
            if k == 0:
                reqs.append(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                want.append(("GET", 200, HELLO))
            elif k == 1:
                body = b"body-%d-" % i + b"x" * (i * 37)
                reqs.append(
                    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
                    + body
                )
                want.append(("POST", 200, body))
            elif k == 2:
                reqs.append(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
                want.append(("HEAD", 200, b""))
            else:
                body = b"chunk-%d" % i
                reqs.append(
                    b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + b"%x\r\n" % len(body)
                    + body
                    + b"\r\n0\r\n\r\n"
                )
                want.append(("POST", 200, body))
        c = RawConn(self.port, timeout=scaled(10))
        self.addCleanup(c.close)
        c.send(b"".join(reqs))
        for i, (method, status, body) in enumerate(want):
            r = c.read_response(method)
            self.assertEqual((r.status, r.body), (status, body), "response %d" % i)
        self.assert_open(c)

    def test_pipeline_split_at_every_byte_boundary_of_second_request(self):
        # A request arriving in pieces, right behind a complete one.
        c = RawConn(self.port)
        self.addCleanup(c.close)
        second = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + second[:10])
        self.assertEqual(c.read_response().body, HELLO)
        for i in range(10, len(second)):
            c.send(second[i : i + 1])
            time.sleep(0.002)
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"abc"))

    def test_pipeline_exceeds_read_buffer(self):
        # Far more than one read buffer of pipelined requests, with bodies
        # of every size around the buffer size, some crossing its end.
        rng = random.Random(1234)
        reqs, want = [], []
        for i in range(1500):
            k = rng.randrange(4)
            if k == 0:
                reqs.append(b"GET /?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
                want.append(("GET", HELLO))
            elif k == 1:
                reqs.append(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                want.append(("HEAD", b""))
            elif k == 2:
                n = rng.choice([0, 1, 100, 4000, 16000, 20000, 25000, rng.randrange(30000)])
                body = (b"%06d" % i + bytes(rng.getrandbits(8) for _ in range(16)) * (n // 16 + 1))[:n]
                reqs.append(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % n + body)
                want.append(("POST", body))
            else:
                body = b"c%d" % i * rng.randrange(1, 300)
                reqs.append(
                    b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
                )
                want.append(("POST", body))
        data = b"".join(reqs)
        c = RawConn(self.port, timeout=scaled(30))
        self.addCleanup(c.close)
        t = threading.Thread(target=c.try_send, args=(data,), daemon=True)
        t.start()
        for i, (method, body) in enumerate(want):
            r = c.read_response(method)
            self.assertEqual(r.status, 200, "response %d" % i)
            if r.body != body:
                self.fail("response %d: %d bytes, wanted %d" % (i, len(r.body), len(body)))
        t.join(scaled(10))
        self.assert_open(c)

    def test_pipeline_random_fragments(self):
        # The same stream cut at random places, with pauses: same answers.
        rng = random.Random(99)
        reqs, want = [], []
        for i in range(300):
            if i % 3 == 0:
                reqs.append(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-I: %d\r\n\r\n" % i)
                want.append(b'{"status":"ok"}')
            elif i % 3 == 1:
                body = b"%d-" % i * (i % 50)
                reqs.append(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                want.append(body)
            else:
                body = b"%d+" % i * (i % 40 + 1)
                half = len(body) // 2
                reqs.append(
                    b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + b"%x;e=1\r\n" % half + body[:half] + b"\r\n"
                    + b"%x\r\n" % (len(body) - half) + body[half:] + b"\r\n0\r\nT: v\r\n\r\n"
                )
                want.append(body)
        data = b"".join(reqs)
        c = RawConn(self.port, timeout=scaled(20))
        self.addCleanup(c.close)

        def sender():
            off = 0
            while off < len(data):
                n = rng.choice([1, 2, 3, 7, 50, 500, 3000])
                if not c.try_send(data[off : off + n]):
                    return
                off += n
                if rng.random() < 0.05:
                    time.sleep(0.002)

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        for i, body in enumerate(want):
            r = c.read_response(timeout=scaled(20))
            self.assertEqual((r.status, r.body), (200, body), "response %d" % i)
        t.join(scaled(10))

    def test_get_with_body_is_consumed(self):
        # A body on a GET is read and dropped: it must not be taken for
        # the next request (RFC 9112 6.3).
        c = RawConn(self.port)
        self.addCleanup(c.close)
        smuggled = b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
        c.send(
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(smuggled)
            + smuggled
            + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        self.assertEqual(c.read_response().body, HELLO)
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b'{"status":"ok"}'))
        self.assert_open(c)

    def test_chunked_body_on_405_is_consumed(self):
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"1f\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        r = c.read_response()
        self.assert_problem(r, 405)
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b'{"status":"ok"}'))

    def test_options_star(self):
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 204, r)
        self.assertIsNone(r.header("Content-Length"), "RFC 9110 8.6: no Content-Length on 204")
        self.assertIsNotNone(r.header("Allow"))
        self.assertEqual(c.read_response().body, HELLO)

    def test_connect_not_implemented(self):
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        r = c.read_response()
        self.assert_problem(r, 501)

    def test_absolute_form_target(self):
        r, c = exchange(self.port, b"GET http://example.com/healthz?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        c.close()
        self.assertEqual((r.status, r.json()), (200, {"status": "ok"}))

    def test_half_close_after_request_still_answered(self):
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        c.sock.shutdown(1)  # SHUT_WR
        self.assertEqual(c.read_response().body, HELLO)
        self.assertEqual(c.read_response().json(), {"status": "ok"})
        self.assert_closed(c)


class TestBodies(VieTestCase):
    def setUp(self):
        self.srv = start_server(self)
        self.port = self.srv.port

    def test_chunked_upload_with_extensions_and_trailer(self):
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            b"5;name=value\r\nhello\r\n"
            b"2;a;b=\"quoted; \\\"str\"\r\n, \r\n"
            b"A\r\n0123456789\r\n"
            b"0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n"
        )
        r = c.read_response()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"hello, 0123456789")
        self.assertEqual(r.header("Content-Type"), "text/plain")
        # the connection is still usable: the trailer was consumed exactly
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(c.read_response().body, HELLO)

    def test_chunked_upload_sent_in_pieces(self):
        c = RawConn(self.port)
        self.addCleanup(c.close)
        msg = (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n"
        )
        for i in range(0, len(msg), 7):
            c.send(msg[i : i + 7])
            time.sleep(0.003)
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"abc0123456789abcdef"))

    def test_chunked_upload_large(self):
        # 3 MiB in chunks of varying size: the decoder must not fill the
        # read buffer with decoded input.
        data = os.urandom(3 * 1024 * 1024)
        parts = []
        off, n = 0, 1
        while off < len(data):
            size = min(len(data) - off, (n * 7919) % 65536 + 1)
            parts.append(b"%x\r\n" % size + data[off : off + size] + b"\r\n")
            off += size
            n += 1
        msg = (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(parts)
            + b"0\r\n\r\n"
        )
        c = RawConn(self.port, timeout=scaled(20))
        self.addCleanup(c.close)
        t = threading.Thread(target=c.try_send, args=(msg,), daemon=True)
        t.start()
        r = c.read_response(timeout=scaled(30))
        t.join(scaled(10))
        self.assertEqual(r.status, 200)
        self.assertEqual(len(r.body), len(data))
        self.assertEqual(hashlib.sha256(r.body).hexdigest(), hashlib.sha256(data).hexdigest())

    def test_10mib_body_raw_socket(self):
        data = os.urandom(10 * 1024 * 1024)
        c = RawConn(self.port, timeout=scaled(30))
        self.addCleanup(c.close)
        head = (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-blob\r\n"
            b"Content-Length: %d\r\n\r\n" % len(data)
        )
        errors = []

        def sender():
            try:
                c.send(head)
                for i in range(0, len(data), 1 << 16):
                    c.send(data[i : i + (1 << 16)])
            except OSError as e:  # reported below, the read fails too
                errors.append(e)

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        r = c.read_response(timeout=scaled(60))
        t.join(scaled(10))
        self.assertEqual(errors, [])
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Type"), "application/x-blob")
        self.assertEqual(int(r.header("Content-Length")), len(data))
        self.assertEqual(hashlib.sha256(r.body).hexdigest(), hashlib.sha256(data).hexdigest())
        # and the connection goes on
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(c.read_response().body, HELLO)

    def test_expect_100_continue(self):
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n"
            b"Content-Type: text/plain\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = c.read_response(timeout=scaled(5))
        self.assertEqual(interim.status, 100, interim)
        self.assertEqual(interim.raw_head.split(b"\r\n")[0], b"HTTP/1.1 100 Continue")
        c.send(b"hello world")
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"hello world"))
        # the next request without Expect gets no 100
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"ok"))

    def test_expect_100_continue_large_body(self):
        data = os.urandom(2 * 1024 * 1024)
        c = RawConn(self.port, timeout=scaled(20))
        self.addCleanup(c.close)
        c.send(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
            b"Expect: 100-continue\r\n\r\n" % len(data)
        )
        interim = c.read_response(timeout=scaled(5))
        self.assertEqual(interim.status, 100, interim)
        t = threading.Thread(target=c.try_send, args=(data,), daemon=True)
        t.start()
        r = c.read_response(timeout=scaled(30))
        t.join(scaled(10))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, data)

    def test_expect_100_continue_chunked(self):
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        interim = c.read_response(timeout=scaled(5))
        self.assertEqual(interim.status, 100, interim)
        c.send(b"4\r\nabcd\r\n0\r\n\r\n")
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"abcd"))

    def test_expect_100_continue_ignored_in_http10(self):
        # RFC 9110 10.1.1: a 100-continue expectation in an HTTP/1.0
        # request MUST be ignored (and 1.0 clients do not know 1xx).
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(b"POST /echo HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        self.assertFalse(c.wait_readable(0.5), "the server answered a 1.0 client before the body")
        c.send(b"abc")
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"abc"))

    def test_expect_100_continue_with_body_already_sent(self):
        # A client that does not wait: the 100 is optional, the 200 is not.
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b"Expect: 100-continue\r\n\r\nabc"
        )
        r = c.read_final_response()
        self.assertEqual((r.status, r.body), (200, b"abc"))

    def test_backpressure_2000_pipelined_echoes(self):
        n, size = 2000, 64 * 1024
        c = RawConn(self.port, timeout=scaled(60), rcvbuf=256 * 1024, sndbuf=256 * 1024)
        self.addCleanup(c.close)

        def body(i):
            tag = b"%08d" % i
            return tag + bytes([i % 251]) * (size - len(tag))

        errors = []
        sent = [0]

        def sender():
            try:
                for i in range(n):
                    c.send(
                        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size
                        + body(i)
                    )
                    sent[0] = i + 1
            except OSError as e:
                errors.append(e)

        rss0 = self.srv.rss_kib()
        t = threading.Thread(target=sender, daemon=True)
        t.start()
        # Do not read for a while: the sender must block, the server must
        # stop reading instead of buffering everything.
        time.sleep(scaled(1.5))
        self.assertLess(sent[0], n, "the server took every request without being read")
        rss_stalled = self.srv.rss_kib()
        # Other clients are served meanwhile.
        for _ in range(5):
            t0 = time.monotonic()
            r = get(self.port, "/")
            self.assertEqual(r.status, 200)
            self.assertLess(time.monotonic() - t0, scaled(2))
        if not SANITIZED:
            self.assertLess(
                rss_stalled - rss0,
                64 * 1024,
                "server RSS grew by %d KiB while the client did not read" % (rss_stalled - rss0),
            )
        # Now read everything, in order.
        for i in range(n):
            r = c.read_response(timeout=scaled(30))
            self.assertEqual(r.status, 200, "response %d" % i)
            self.assertEqual(len(r.body), size, "response %d" % i)
            self.assertEqual(r.body[:8], b"%08d" % i, "response %d out of order" % i)
            if r.body != body(i):
                self.fail("response %d corrupted" % i)
        t.join(scaled(10))
        self.assertEqual(errors, [])
        self.assertEqual(sent[0], n)
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(c.read_response().body, HELLO)

    def test_other_clients_served_while_one_uploads_slowly(self):
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        for _ in range(5):
            r = get(self.port, "/healthz")
            self.assertEqual(r.status, 200)
        c.send(b"defghij")
        self.assertEqual(c.read_response().body, b"abcdefghij")


@unittest.skipUnless(CURL, "curl is not installed")
class TestCurl(VieTestCase):
    def setUp(self):
        self.srv = start_server(self)
        self.base = "http://%s:%d" % (HOST, self.srv.port)
        self.tmp = tempfile.mkdtemp(prefix="vie-it-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def curl(self, *args, timeout=None):
        p = subprocess.run(
            [CURL, "-sS", "--max-time", str(int(scaled(30))), *args],
            capture_output=True,
            timeout=timeout or scaled(60),
        )
        self.assertEqual(p.returncode, 0, "curl %s failed: %s" % (args, p.stderr.decode(errors="replace")))
        return p.stdout

    def test_curl_get_include(self):
        out = self.curl("-i", self.base + "/")
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"), head)
        self.assertIn(b"\r\nContent-Length: 13", head)
        self.assertIn(b"\r\nDate: ", head)
        self.assertEqual(body, HELLO)

    def test_curl_http10(self):
        out = self.curl("--http1.0", "-i", self.base + "/")
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertRegex(head.split(b"\r\n")[0], rb"^HTTP/1\.[01] 200 OK$")
        self.assertEqual(body, HELLO)
        self.assertNotIn(b"Transfer-Encoding", head)

    def test_curl_keepalive_two_urls(self):
        out = self.curl("-v", self.base + "/", self.base + "/healthz")
        self.assertEqual(out, HELLO + b'{"status":"ok"}')

    def test_curl_chunked_upload(self):
        path = os.path.join(self.tmp, "up.bin")
        data = os.urandom(300 * 1024)
        with open(path, "wb") as f:
            f.write(data)
        out = self.curl(
            "-H", "Transfer-Encoding: chunked", "-H", "Content-Type: application/x-up",
            "--data-binary", "@" + path, self.base + "/echo",
        )
        self.assertEqual(hashlib.sha256(out).hexdigest(), hashlib.sha256(data).hexdigest())

    def test_curl_10mib_echo(self):
        path = os.path.join(self.tmp, "big.bin")
        outp = os.path.join(self.tmp, "big.out")
        data = os.urandom(10 * 1024 * 1024)
        with open(path, "wb") as f:
            f.write(data)
        # curl sends "Expect: 100-continue" for a body this large.
        self.curl("--data-binary", "@" + path, "-o", outp, self.base + "/echo")
        with open(outp, "rb") as f:
            got = f.read()
        self.assertEqual(len(got), len(data))
        self.assertEqual(hashlib.sha256(got).hexdigest(), hashlib.sha256(data).hexdigest())

    def test_curl_head(self):
        out = self.curl("-I", self.base + "/")
        self.assertIn(b"Content-Length: 13", out)
        self.assertTrue(out.startswith(b"HTTP/1.1 200 OK"))

    def test_curl_404(self):
        out = self.curl("-i", self.base + "/missing")
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 404 Not Found"), head)
        self.assertIn(b"Content-Type: application/problem+json", head)
        self.assertIn(b'"status":404', body)


if __name__ == "__main__":
    unittest.main()
