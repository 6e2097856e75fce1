"""Malformed and oversized requests: each gets its exact status as
problem+json, and then the server closes the connection (RFC 9112)."""

import socket
import time
import unittest

from vietest import RawConn, VieTestCase, get, scaled, start_server

H = b"Host: x\r\n"


def post_echo(headers, body=b""):
    return b"POST /echo HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n" + body


def get_with(headers, target=b"/"):
    return b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"


# (name, request bytes, status)
CASES = [
    ("cl_and_te", post_echo(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), 400),
    ("te_and_cl", post_echo(b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n"), 400),
    ("two_content_lengths", post_echo(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"), 400),
    ("content_length_list", post_echo(b"Content-Length: 5, 6\r\n", b"hello!"), 400),
    ("content_length_plus", post_echo(b"Content-Length: +5\r\n", b"hello"), 400),
    ("content_length_minus", post_echo(b"Content-Length: -1\r\n"), 400),
    ("content_length_hex", post_echo(b"Content-Length: 0x5\r\n", b"hello"), 400),
    ("content_length_overflow", post_echo(b"Content-Length: 99999999999999999999999\r\n"), 400),
    ("content_length_2p64", post_echo(b"Content-Length: 18446744073709551621\r\n", b"hello"), 400),
    ("content_length_empty", post_echo(b"Content-Length: \r\n"), 400),
    ("content_length_space_inside", post_echo(b"Content-Length: 1 2\r\n", b"x" * 12), 400),
    ("te_gzip", post_echo(b"Transfer-Encoding: gzip\r\n", b"abc"), 400),
    ("te_chunked_gzip", post_echo(b"Transfer-Encoding: chunked, gzip\r\n", b"abc"), 400),
    ("te_chunked_twice", post_echo(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"), 400),
    ("te_gzip_chunked", post_echo(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"), 501),
    ("te_in_http10", b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("space_before_colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    ("space_before_colon_other", get_with(b"X-A : 1\r\n"), 400),
    ("obs_fold", get_with(b"X-A: a\r\n b\r\n"), 400),
    ("obs_fold_tab", get_with(b"X-A: a\r\n\tb\r\n"), 400),
    ("space_before_first_header", b"GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400),
    ("bad_token_in_name", get_with(b"Ho(st: x\r\n"), 400),
    ("empty_header_name", get_with(b": x\r\n"), 400),
    ("header_without_colon", get_with(b"NoColon\r\n"), 400),
    ("nul_in_value", get_with(b"X-A: a\x00b\r\n"), 400),
    ("ctl_in_value", get_with(b"X-A: a\x01b\r\n"), 400),
    ("del_in_value", get_with(b"X-A: a\x7fb\r\n"), 400),
    ("missing_host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("repeated_host", b"GET / HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n", 400),
    ("repeated_host_different", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("bad_host_value", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("bare_cr_in_value", get_with(b"X-A: a\rb\r\n"), 400),
    ("bare_cr_in_request_line", b"GET /\r HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("bare_cr_line_end", b"GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n", 400),
    ("bad_chunk_size", post_echo(b"Transfer-Encoding: chunked\r\n", b"zz\r\n"), 400),
    ("chunk_size_overflow", post_echo(b"Transfer-Encoding: chunked\r\n", b"fffffffffffffffffff\r\n"), 400),
    ("chunk_size_negative", post_echo(b"Transfer-Encoding: chunked\r\n", b"-1\r\n"), 400),
    ("chunk_missing_crlf", post_echo(b"Transfer-Encoding: chunked\r\n", b"3\r\nabcX\r\n0\r\n\r\n"), 400),
    ("chunk_bad_extension", post_echo(b"Transfer-Encoding: chunked\r\n", b"3;=x\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk_extension_too_long", post_echo(b"Transfer-Encoding: chunked\r\n", b"3;x=" + b"a" * 5000 + b"\r\nabc\r\n0\r\n\r\n"), 400),
    ("trailer_too_large", post_echo(b"Transfer-Encoding: chunked\r\n", b"0\r\nX-T: " + b"t" * 17000 + b"\r\n\r\n"), 400),
    ("trailer_obs_fold", post_echo(b"Transfer-Encoding: chunked\r\n", b"0\r\nX-T: a\r\n b\r\n\r\n"), 400),
    ("request_line_two_spaces", b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("request_line_two_spaces_after_target", b"GET /  HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("request_line_leading_space", b" GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("request_line_no_version", b"GET /\r\nHost: x\r\n\r\n", 400),
    ("request_line_tab", b"GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("lowercase_version", b"GET / http/1.1\r\nHost: x\r\n\r\n", 400),
    ("version_garbage", b"GET / HTTP/1.x\r\nHost: x\r\n\r\n", 400),
    ("method_not_token", b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("fragment_in_target", b"GET /#frag HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("space_in_target", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("ctl_in_target", b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("relative_target", b"GET abc HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("uri_too_long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ("head_too_large", b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-Pad-%02d: %s\r\n" % (i, b"v" * 1000) for i in range(17)) + b"\r\n", 431),
    ("one_huge_header", get_with(b"X-Big: " + b"v" * 17000 + b"\r\n"), 431),
    ("too_many_headers", b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-H%d: v\r\n" % i for i in range(100)) + b"\r\n", 431),
    ("body_too_large", post_echo(b"Content-Length: 17000000\r\n"), 413),
    ("body_too_large_with_expect", post_echo(b"Content-Length: 17000000\r\nExpect: 100-continue\r\n"), 413),
    ("http2", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    ("http3", b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505),
    ("http09_style_version", b"GET / HTTP/0.9\r\nHost: x\r\n\r\n", 505),
    ("expect_other", get_with(b"Expect: foo\r\n"), 417),
]

# Well-framed requests whose path is refused after parsing: 400, and the
# connection may stay open (the message framing is intact), but only if
# the response does not announce a close.
PATH_CASES = [
    ("dotdot_above_root", b"GET /../x HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("encoded_dotdot_above_root", b"GET /%2e%2e/x HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("encoded_dotdot_upper", b"GET /%2E%2E/x HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("deep_dotdot_above_root", b"GET /a/../../x HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("bad_percent_escape", b"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("dotdot_above_root_post", b"POST /../echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 400),
]


class TestMalformed(VieTestCase):
    def setUp(self):
        self.srv = start_server(self)
        self.port = self.srv.port

    def check(self, data, status, method="GET"):
        c = RawConn(self.port)
        self.addCleanup(c.close)
        try:
            c.send(data)
        except OSError:
            pass  # the server may refuse before it read everything
        r = c.read_response(method)
        doc = self.assert_problem(r, status)
        self.assertTrue(r.has_token("Connection", "close"), r)
        self.assert_closed(c, scaled(5), "after a %d" % status)
        self.assertEqual(bytes(c.buf), b"", "bytes after the error response")
        return r, doc

    def test_cases(self):
        for name, data, status in CASES:
            with self.subTest(name):
                self.check(data, status)
        # The server is still fine after all that.
        r = get(self.port, "/")
        self.assertEqual(r.status, 200)

    def test_path_cases(self):
        for name, data, status in PATH_CASES:
            with self.subTest(name):
                c = RawConn(self.port)
                self.addCleanup(c.close)
                c.send(data)
                r = c.read_response()
                self.assert_problem(r, status)
                if r.has_token("Connection", "close"):
                    self.assert_closed(c)
                    self.assertEqual(bytes(c.buf), b"")
                else:
                    # kept open: the next request must be read correctly
                    c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    r2 = c.read_response()
                    self.assertEqual((r2.status, r2.body), (200, b'{"status":"ok"}'))

    def test_413_before_any_body_byte(self):
        # The head alone decides: no body byte is ever sent.
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(post_echo(b"Content-Length: 17000000\r\nContent-Type: text/plain\r\n"))
        r = c.read_response(timeout=scaled(5))
        self.assert_problem(r, 413)
        self.assert_closed(c)

    def test_413_with_expect_sends_no_100(self):
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(post_echo(b"Content-Length: 17000000\r\nExpect: 100-continue\r\n"))
        r = c.read_response(timeout=scaled(5))
        self.assertNotEqual(r.status, 100, "100 Continue for a body that will be refused")
        self.assert_problem(r, 413)
        self.assert_closed(c)

    def test_413_chunked_over_limit(self):
        c = RawConn(self.port)
        self.addCleanup(c.close)
        # one chunk announced at 17 MB: refused on its size line
        c.send(post_echo(b"Transfer-Encoding: chunked\r\n", b"1036640\r\n"))
        r = c.read_response(timeout=scaled(5))
        self.assert_problem(r, 413)
        self.assert_closed(c)

    def test_max_content_length_is_accepted(self):
        # 16 MiB exactly is not refused (head only: we never send the body
        # and just check the server does not answer 413 at once).
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(post_echo(b"Content-Length: 16777216\r\nExpect: 100-continue\r\n"))
        r = c.read_response(timeout=scaled(5))
        self.assertEqual(r.status, 100, r)

    def test_leading_empty_line_tolerated(self):
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"Hello, World!"))
        self.assert_open(c)
        # between two requests too
        c.send(b"\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(c.read_response().status, 200)

    def test_two_leading_empty_lines_refused(self):
        # RFC 9112 2.2 allows ignoring "at least one" empty line; Vie skips one.
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
        self.assert_problem(r, 400)
        self.assert_closed(c)

    def test_valid_edge_cases_accepted(self):
        ok = [
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Empty:\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-OWS: \t v \t\r\n\r\n",
            b"GET / HTTP/1.1\r\nhOsT: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Obs: caf\xe9\r\n\r\n",
            b"GET /./ HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /a/.. HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /%2e HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET / HTTP/1.1\nHost: x\n\n",
            # 100 header fields: the default limit, not over it
            b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(99)) + b"\r\n",
            # a 15000-byte field: under the 16384-byte head limit
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 15000 + b"\r\n\r\n",
            # an 8000-byte request line: under the 8192-byte limit
            b"GET /?" + b"q" * (8000 - len(b"GET /? HTTP/1.1")) + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        ]
        for data in ok:
            with self.subTest(data=data):
                c = RawConn(self.port)
                self.addCleanup(c.close)
                c.send(data)
                r = c.read_final_response()
                self.assertEqual((r.status, r.body), (200, b"Hello, World!"), r)

    def test_valid_body_framing_variants(self):
        cases = [
            (b"Content-Length: 005\r\n", b"hello", b"hello"),
            (b"content-length:5\r\n", b"hello", b"hello"),
            (b"Content-Length: 5 \r\n", b"hello", b"hello"),
            (b"Transfer-Encoding: Chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"Transfer-Encoding: chunked \r\n", b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"Transfer-Encoding: chunked\r\n", b"005\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"Transfer-Encoding: chunked\r\n", b"5 ; ext\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"Transfer-Encoding: chunked\r\n", b"0\r\n\r\n", b""),
        ]
        for headers, body, want in cases:
            with self.subTest(headers=headers, body=body):
                c = RawConn(self.port)
                self.addCleanup(c.close)
                c.send(post_echo(headers, body) + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                r = c.read_response()
                self.assertEqual((r.status, r.body), (200, want), r)
                r = c.read_response()
                self.assertEqual(r.status, 200, "framing off by some bytes: %r" % r)

    def test_same_content_length_twice_accepted(self):
        # RFC 9110 8.6: identical values may be accepted as one.
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(post_echo(b"Content-Length: 3\r\nContent-Length: 3\r\n", b"abc"))
        r = c.read_response()
        self.assertIn(r.status, (200, 400), r)
        if r.status == 200:
            self.assertEqual(r.body, b"abc")

    def test_error_after_good_request_in_pipeline(self):
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        r1 = c.read_response()
        self.assertEqual((r1.status, r1.body), (200, b"Hello, World!"))
        r2 = c.read_response()
        self.assert_problem(r2, 505)
        self.assert_closed(c)
        self.assertEqual(bytes(c.buf), b"", "a request after the error was answered")

    def test_bad_chunk_after_good_chunks(self):
        c = RawConn(self.port)
        self.addCleanup(c.close)
        c.send(post_echo(b"Transfer-Encoding: chunked\r\n", b"3\r\nabc\r\n"))
        time.sleep(0.05)
        c.send(b"xyz\r\n")
        r = c.read_response()
        self.assert_problem(r, 400)
        self.assert_closed(c)

    def test_garbage_and_tls_hello(self):
        for data in (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
            b"\x00\x00\x00\x00",
            b"hello there\r\n\r\n",
        ):
            with self.subTest(data=data[:8]):
                c = RawConn(self.port)
                self.addCleanup(c.close)
                c.send(data)
                r = c.read_response()
                self.assert_problem(r, 400)
                self.assert_closed(c)

    def test_server_serves_after_400s(self):
        for i in range(20):
            c = RawConn(self.port)
            c.send(b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 400)
            c.close()
        for i in range(5):
            r = get(self.port, "/")
            self.assertEqual(r.status, 200)

    def test_client_closes_mid_head(self):
        # Disconnects at awkward moments must not hurt the server.
        for data in (
            b"GET / HT",
            b"GET / HTTP/1.1\r\nHost: x\r\n",
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc",
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        ):
            c = RawConn(self.port)
            c.send(data)
            time.sleep(0.02)
            c.close()
        # and with a reset
        c = RawConn(self.port)
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()
        time.sleep(0.05)
        self.assertEqual(get(self.port, "/").status, 200)


class TestLimitFlags(VieTestCase):
    def setUp(self):
        self.srv = start_server(
            self,
            "--max-request-line", "100",
            "--max-headers", "5",
            "--max-body", "1000",
            "--max-header-bytes", "1024",
        )
        self.port = self.srv.port

    def send(self, data, method="GET"):
        c = RawConn(self.port)
        self.addCleanup(c.close)
        try:
            c.send(data)
        except OSError:
            pass
        return c.read_response(method), c

    def test_max_request_line(self):
        # request line = "GET /?" + pad + " HTTP/1.1", CRLF excluded
        fixed = len(b"GET /? HTTP/1.1")
        r, _ = self.send(b"GET /?" + b"a" * (100 - fixed) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(r.status, 200, "a 100-byte request line is within the limit")
        r, c = self.send(b"GET /?" + b"a" * (101 - fixed) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assert_problem(r, 414)
        self.assert_closed(c)
        r, c = self.send(b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assert_problem(r, 414)
        self.assert_closed(c)

    def test_max_headers(self):
        five = b"Host: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(4))
        r, _ = self.send(b"GET / HTTP/1.1\r\n" + five + b"\r\n")
        self.assertEqual(r.status, 200)
        r, c = self.send(b"GET / HTTP/1.1\r\n" + five + b"X-5: v\r\n\r\n")
        self.assert_problem(r, 431)
        self.assert_closed(c)

    def test_max_body(self):
        body = b"b" * 1000
        r, _ = self.send(post_echo(b"Content-Length: 1000\r\n", body))
        self.assertEqual((r.status, r.body), (200, body))
        r, c = self.send(post_echo(b"Content-Length: 1001\r\n"))
        self.assert_problem(r, 413)
        self.assert_closed(c)
        # chunked: judged on the decoded size
        r, _ = self.send(post_echo(b"Transfer-Encoding: chunked\r\n", b"3e8\r\n" + body + b"\r\n0\r\n\r\n"))
        self.assertEqual((r.status, r.body), (200, body))
        r, c = self.send(
            post_echo(b"Transfer-Encoding: chunked\r\n",
                      b"3e8\r\n" + body + b"\r\n1\r\nx\r\n0\r\n\r\n")
        )
        self.assert_problem(r, 413)
        self.assert_closed(c)

    def test_max_header_bytes(self):
        def head(total):
            base = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n"
            return base.replace(b"X-Pad: ", b"X-Pad: " + b"p" * (total - len(base)))

        r, _ = self.send(head(900))
        self.assertEqual(r.status, 200)
        r, c = self.send(head(1200))
        self.assert_problem(r, 431)
        self.assert_closed(c)
        # many small header lines (under the count limit) over the byte limit
        r, c = self.send(
            b"GET / HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 300) for i in range(4))
            + b"\r\n"
        )
        self.assert_problem(r, 431)
        self.assert_closed(c)

    def test_defaults_still_ok(self):
        r = get(self.port, "/")
        self.assertEqual(r.status, 200)


if __name__ == "__main__":
    unittest.main()
