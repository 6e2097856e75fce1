"""Connection management: timeouts, limits, many connections, shutdown."""

import os
import signal
import socket
import threading
import time
import unittest

from vietest import (
    SANITIZED,
    ConnectionClosed,
    RawConn,
    Server,
    VieTestCase,
    get,
    raise_nofile,
    nofile_limit,
    scaled,
    start_server,
)

HELLO = b"Hello, World!"

raise_nofile()  # for the many-connections tests (the server raises its own)


def wait_until(pred, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return v
        time.sleep(step)


class TestTimeouts(VieTestCase):
    def test_slowloris_head_gets_408(self):
        srv = start_server(self, "--header-timeout", "500")
        c = RawConn(srv.port)
        self.addCleanup(c.close)
        head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
        t0 = time.monotonic()
        sent = 0
        # One byte every 100 ms, for at most 8 s, until the server answers.
        while sent < len(head) and time.monotonic() - t0 < scaled(8):
            if not c.try_send(head[sent : sent + 1]):
                break
            sent += 1
            if c.wait_readable(0.1):
                break
        r = c.read_response(timeout=scaled(5))
        self.assert_problem(r, 408)
        self.assertTrue(r.has_token("Connection", "close"), r)
        # keep trickling while waiting for the close: it must come anyway
        deadline = time.monotonic() + scaled(5)
        closed = False
        while time.monotonic() < deadline:
            c.try_send(b"a")
            if c.closed_by_server(0.1):
                closed = True
                break
        elapsed = time.monotonic() - t0
        self.assertTrue(closed, "the slow client was not disconnected")
        self.assertGreater(elapsed, 0.4, "408 before the header timeout")
        self.assertLess(elapsed, scaled(3), "slowloris client kept for %.2f s" % elapsed)
        self.assertIsNotNone(srv.wait_log(r"408", scaled(2)), srv.log())

    def test_slowloris_does_not_block_others(self):
        srv = start_server(self, "--header-timeout", "1000")
        slow = []
        for _ in range(20):
            c = RawConn(srv.port)
            self.addCleanup(c.close)
            c.send(b"GET / HTTP/1.1\r\nHo")
            slow.append(c)
        for _ in range(10):
            self.assertEqual(get(srv.port, "/").status, 200)
        for c in slow:
            r = c.read_response(timeout=scaled(5))
            self.assertEqual(r.status, 408)
            self.assert_closed(c)

    def test_slow_body_gets_408(self):
        srv = start_server(self, "--body-timeout", "500")
        c = RawConn(srv.port)
        self.addCleanup(c.close)
        t0 = time.monotonic()
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"0123456789")
        r = c.read_response(timeout=scaled(5))
        self.assert_problem(r, 408)
        self.assert_closed(c, scaled(3))
        elapsed = time.monotonic() - t0
        self.assertGreater(elapsed, 0.4)
        self.assertLess(elapsed, scaled(3), "slow body kept for %.2f s" % elapsed)

    def test_slow_large_body_gets_408(self):
        # a body too big for the read buffer takes another path: same rule
        srv = start_server(self, "--body-timeout", "500")
        c = RawConn(srv.port)
        self.addCleanup(c.close)
        t0 = time.monotonic()
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"z" * 30000)
        r = c.read_response(timeout=scaled(5))
        self.assert_problem(r, 408)
        self.assert_closed(c, scaled(3))
        self.assertLess(time.monotonic() - t0, scaled(3))

    def test_slow_but_steady_body_is_fine(self):
        # body-timeout is the longest pause between reads, not a total
        srv = start_server(self, "--body-timeout", "1000")
        c = RawConn(srv.port)
        self.addCleanup(c.close)
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        for ch in b"0123456789":
            time.sleep(0.2)
            c.send(bytes([ch]))
        r = c.read_response(timeout=scaled(5))
        self.assertEqual((r.status, r.body), (200, b"0123456789"))

    def test_slow_chunked_body_gets_408(self):
        srv = start_server(self, "--body-timeout", "500")
        c = RawConn(srv.port)
        self.addCleanup(c.close)
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
        r = c.read_response(timeout=scaled(5))
        self.assert_problem(r, 408)
        self.assert_closed(c, scaled(3))

    def test_idle_keepalive_closed(self):
        srv = start_server(self, "--keepalive-timeout", "500")
        c = RawConn(srv.port)
        self.addCleanup(c.close)
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(c.read_response().body, HELLO)
        t0 = time.monotonic()
        self.assert_closed(c, scaled(5), "while idle")
        elapsed = time.monotonic() - t0
        self.assertGreater(elapsed, 0.3, "closed before the keep-alive timeout")
        self.assertLess(elapsed, scaled(2), "idle connection kept %.2f s" % elapsed)
        self.assertEqual(bytes(c.buf), b"", "an idle close must be silent (no 408)")

    def test_idle_fresh_connection_closed(self):
        srv = start_server(self, "--keepalive-timeout", "500")
        c = RawConn(srv.port)
        self.addCleanup(c.close)
        t0 = time.monotonic()
        self.assert_closed(c, scaled(5), "with nothing sent")
        self.assertLess(time.monotonic() - t0, scaled(2))

    def test_active_keepalive_not_closed(self):
        srv = start_server(self, "--keepalive-timeout", "1000")
        c = RawConn(srv.port)
        self.addCleanup(c.close)
        for _ in range(8):  # 8 x 0.3 s > the 1 s timeout in total
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(c.read_response().body, HELLO)
            time.sleep(0.3)

    def test_write_timeout_closes_non_reader(self):
        srv = start_server(self, "--write-timeout", "500", "--max-body", str(64 << 20))
        size = 16 << 20
        c = RawConn(srv.port, timeout=scaled(30), rcvbuf=64 * 1024)
        self.addCleanup(c.close)
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        chunk = b"w" * (1 << 20)
        for _ in range(size >> 20):
            c.send(chunk)
        # Read nothing: the server gives up on us.
        line = srv.wait_log(r"read nothing", scaled(5))
        self.assertIsNotNone(line, "no write-timeout log line:\n" + srv.log())
        got = b""
        try:
            got = c.read_to_eof(scaled(10))
        except ConnectionClosed:
            pass
        self.assertLess(len(got), size, "the whole response arrived despite the timeout")
        self.assertEqual(get(srv.port, "/").status, 200)

    def test_slow_but_steady_reader_is_fine(self):
        # write-timeout is the longest pause of a reader, not a deadline for
        # the whole response: a client that keeps reading, slowly, gets it all.
        srv = start_server(self, "--write-timeout", "1000")
        size = 8 << 20
        c = RawConn(srv.port, timeout=scaled(30), rcvbuf=64 * 1024)
        self.addCleanup(c.close)
        body = os.urandom(size)
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size + body)
        got = bytearray()
        t0 = time.monotonic()
        want = None  # total bytes once the head is in
        # about 2.5 MiB/s: some 3.5 s in all, never a 1 s pause
        while (want is None or len(got) < want) and time.monotonic() - t0 < scaled(20):
            try:
                chunk = c.sock.recv(256 * 1024)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
            if want is None and b"\r\n\r\n" in got:
                want = got.index(b"\r\n\r\n") + 4 + size
            time.sleep(0.1 * len(chunk) / (256 * 1024))
        head, _, rest = bytes(got).partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head[:100])
        self.assertEqual(len(rest), size, "the slow reader got %d of %d bytes after %.1f s; log:\n%s"
                         % (len(rest), size, time.monotonic() - t0, srv.log()))
        self.assertTrue(rest == body)


class TestManyConnections(VieTestCase):
    def test_1000_idle_connections(self):
        n = 1000
        if nofile_limit() < n + 200:
            self.skipTest("RLIMIT_NOFILE too low (%d)" % nofile_limit())
        srv = start_server(self)
        self.assertEqual(get(srv.port, "/").status, 200)  # warm up pools
        base = wait_until(lambda: srv.fd_count(), 1)
        time.sleep(0.2)
        base = srv.fd_count()
        idle = []
        self.addCleanup(lambda: [c.close() for c in idle])
        t0 = time.monotonic()
        for i in range(n):
            idle.append(RawConn(srv.port, timeout=scaled(10)))
        self.assertTrue(
            wait_until(lambda: srv.fd_count() >= base + n, scaled(10)),
            "server holds %d fds, expected >= %d" % (srv.fd_count(), base + n),
        )
        # Some of them send half a head, some a whole request.
        for c in idle[:100]:
            c.send(b"GET / HTTP/1.1\r\nHost")
        for c in idle[100:200]:
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        for c in idle[100:200]:
            self.assertEqual(c.read_response().body, HELLO)
        # A separate client: 200 requests, each on a fresh connection.
        t1 = time.monotonic()
        for i in range(200):
            r = get(srv.port, "/healthz" if i % 2 else "/")
            self.assertEqual(r.status, 200, "request %d" % i)
        took = time.monotonic() - t1
        self.assertLess(took, scaled(10), "200 requests took %.1f s with %d idle" % (took, n))
        # and 200 on one keep-alive connection
        c = RawConn(srv.port)
        self.addCleanup(c.close)
        for i in range(200):
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(c.read_response().status, 200)
        c.close()
        for c in idle:
            c.close()
        idle.clear()
        ok = wait_until(lambda: srv.fd_count() <= base, scaled(10))
        self.assertTrue(ok, "server fds: %d, baseline %d" % (srv.fd_count(), base))
        self.assertEqual(get(srv.port, "/").status, 200)

    def test_max_connections(self):
        srv = start_server(self, "--max-connections", "50")
        base = srv.fd_count()
        held = []
        self.addCleanup(lambda: [c.close() for c in held])
        for i in range(50):
            c = RawConn(srv.port)
            held.append(c)
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(c.read_response().status, 200, "connection %d" % i)
        # Ten more, opened in a burst: each is answered 503 and closed.
        t0 = time.monotonic()
        extra = [RawConn(srv.port) for _ in range(10)]
        burst = time.monotonic() - t0
        self.addCleanup(lambda: [c.close() for c in extra])
        for i, c in enumerate(extra):
            r = c.read_response(timeout=scaled(5))
            self.assert_problem(r, 503)
            self.assertTrue(r.has_token("Connection", "close"), r)
            self.assertIsNotNone(r.header("Retry-After"))
            self.assert_closed(c, what="after 503 (extra %d)" % i)
        # The 50 are still served.
        for c in held[:5]:
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(c.read_response().status, 200)
        lines = srv.wait_log(r"max_connections", scaled(2))
        self.assertIsNotNone(lines, srv.log())
        time.sleep(0.2)
        lines = [l for l in srv.log_lines() if "max_connections" in l]
        if burst < 0.5:
            self.assertEqual(len(lines), 1, "not rate-limited:\n" + "\n".join(lines))
        else:
            self.assertLessEqual(len(lines), 2 + int(burst), "\n".join(lines))
        # Free the slots: the server serves again.
        for c in held:
            c.close()
        held.clear()

        def served():
            try:
                return get(srv.port, "/").status == 200
            except (OSError, ConnectionClosed, AssertionError):
                return False

        self.assertTrue(wait_until(served, scaled(5), 0.1), "not served after the slots freed")
        # once the server has seen every close, all 50 slots are free again
        self.assertTrue(wait_until(lambda: srv.fd_count() <= base, scaled(5)),
                        "server fds %d, baseline %d" % (srv.fd_count(), base))
        conns = []
        self.addCleanup(lambda: [c.close() for c in conns])
        for i in range(50):
            c = RawConn(srv.port)
            conns.append(c)
        for i, c in enumerate(conns):
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200, "slot %d after freeing: %r" % (i, r))

    def test_max_keepalive_requests(self):
        srv = start_server(self, "--max-keepalive-requests", "3")
        c = RawConn(srv.port)
        self.addCleanup(c.close)
        for i in range(3):
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200)
            if i < 2:
                self.assertFalse(r.has_token("Connection", "close"), "response %d: %r" % (i, r))
            else:
                self.assertTrue(r.has_token("Connection", "close"), "response %d: %r" % (i, r))
        self.assert_closed(c)
        self.assertEqual(bytes(c.buf), b"")

    def test_max_keepalive_requests_pipelined(self):
        srv = start_server(self, "--max-keepalive-requests", "3")
        c = RawConn(srv.port)
        self.addCleanup(c.close)
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 5)
        for i in range(3):
            r = c.read_response()
            self.assertEqual(r.status, 200)
        self.assertTrue(r.has_token("Connection", "close"))
        self.assert_closed(c)
        self.assertEqual(bytes(c.buf), b"", "more than 3 responses on the connection")


class TestAbortedClients(VieTestCase):
    def test_client_reset_during_large_response(self):
        srv = start_server(self)
        self.assertEqual(get(srv.port, "/").status, 200)
        time.sleep(0.1)
        base = srv.fd_count()
        size = 8 << 20
        for i in range(3):
            c = RawConn(srv.port, timeout=scaled(20), rcvbuf=64 * 1024)
            c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
            c.send(b"r" * size)
            c.sock.recv(1000)  # the response has started
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            c.close()  # RST
        self.assertTrue(wait_until(lambda: srv.fd_count() <= base, scaled(5)),
                        "server fds %d, baseline %d" % (srv.fd_count(), base))
        self.assertEqual(get(srv.port, "/").status, 200)

    def test_client_closes_with_pipelined_requests_pending(self):
        srv = start_server(self)
        for i in range(5):
            c = RawConn(srv.port)
            c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n" + b"p" * 65536)
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 200)
            c.close()
        self.assertEqual(get(srv.port, "/").status, 200)


class TestShutdown(VieTestCase):
    def test_sigterm_with_idle_keepalive(self):
        srv = Server()
        srv.start()
        self.addCleanup(srv.kill)
        c = RawConn(srv.port)
        self.addCleanup(c.close)
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(c.read_response().body, HELLO)
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        rc = srv.wait_exit(scaled(5))
        took = time.monotonic() - t0
        self.assertIsNotNone(rc, "still running %.1f s after SIGTERM:\n%s" % (took, srv.log()))
        self.assertEqual(rc, 0, srv.log())
        self.assertLess(took, scaled(2), "exit took %.2f s" % took)
        srv.check_log(self)
        self.assert_closed(c, 2)

    def test_sigterm_with_many_idle_connections(self):
        srv = Server()
        srv.start()
        self.addCleanup(srv.kill)
        conns = []
        self.addCleanup(lambda: [c.close() for c in conns])
        for i in range(50):
            c = RawConn(srv.port)
            conns.append(c)
            if i % 2:
                c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                c.read_response()
        time.sleep(0.1)
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        rc = srv.wait_exit(scaled(5))
        self.assertEqual(rc, 0, srv.log())
        self.assertLess(time.monotonic() - t0, scaled(2))
        srv.check_log(self)

    def test_sigterm_refuses_new_connections(self):
        srv = Server()
        srv.start()
        self.addCleanup(srv.kill)
        port = srv.port
        srv.signal(signal.SIGTERM)
        self.assertEqual(srv.wait_exit(scaled(5)), 0, srv.log())
        srv.check_log(self)
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()

    def test_sigterm_during_partial_head_drains(self):
        # A request in progress is not cut: once it completes it is
        # answered with Connection: close, then the server exits.
        srv = Server()
        srv.start()
        self.addCleanup(srv.kill)
        c = RawConn(srv.port)
        self.addCleanup(c.close)
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.1)
        srv.signal(signal.SIGTERM)
        time.sleep(0.2)
        self.assertIsNone(srv.proc.poll(), "exited with a request in progress")
        # no new connections while draining
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
        c.send(b"\r\n")
        r = c.read_response(timeout=scaled(5))
        self.assertEqual((r.status, r.body), (200, HELLO))
        self.assertTrue(r.has_token("Connection", "close"), r)
        self.assert_closed(c)
        self.assertEqual(srv.wait_exit(scaled(5)), 0, srv.log())
        srv.check_log(self)

    def test_sigterm_with_stuck_reader_exits_after_drain(self):
        # A client that never reads its big response cannot hold the
        # server forever: the 10 s drain deadline closes it.
        srv = Server()
        srv.start()
        self.addCleanup(srv.kill)
        c = RawConn(srv.port, timeout=scaled(30), rcvbuf=64 * 1024)
        self.addCleanup(c.close)
        size = 12 << 20
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        c.send(b"s" * size)
        time.sleep(0.3)
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        time.sleep(0.5)
        self.assertIsNone(srv.proc.poll(), "exited with a response still being written")
        rc = srv.wait_exit(scaled(10) + 5)
        took = time.monotonic() - t0
        self.assertIsNotNone(rc, "still running %.1f s after SIGTERM:\n%s" % (took, srv.log()))
        self.assertEqual(rc, 0, srv.log())
        self.assertGreater(took, 5, "the drain deadline is 10 s")
        self.assertLess(took, scaled(10) + 4)
        self.assertIsNotNone(srv.wait_log(r"drain timeout", 1), srv.log())
        srv.check_log(self)

    def test_sigint_also_stops(self):
        srv = Server()
        srv.start()
        self.addCleanup(srv.kill)
        srv.signal(signal.SIGINT)
        self.assertEqual(srv.wait_exit(scaled(5)), 0, srv.log())
        srv.check_log(self)


if __name__ == "__main__":
    unittest.main()
