"""rate_limit with backend: redis, on the real binary and a real
redis-server that each test starts on a free loopback port (the tests are
skipped, saying so, only when redis-server is not installed):

- two `vie` processes (one with a worker process, one without) sharing
  one Redis enforce one limit: of M requests alternating between them,
  exactly N (the burst) pass, with RateLimit-Remaining N-1..0 in order;
- nothing listening at the address (connection errors) and a SIGSTOPped
  redis-server (timeouts) are decided by on_backend_error: allow lets the
  request through without RateLimit fields, deny answers 503 with
  Retry-After; vie_ratelimit_backend_errors_total counts them by kind;
  the log has one line per incident, not per request, and after SIGCONT
  the decisions come from Redis again and one recovery line is logged;
- a Redis that goes away and comes back (empty) is connected to again,
  the script loaded again;
- AUTH with a password from ${ENV}; a wrong password is an incident that
  names the AUTH failure;
- clients that leave while their decision is pending (and requests whose
  deadline passes first) leave the server healthy: late replies are
  dropped, no stale ref is touched, no sanitizer report;
- `vie check` does not connect to Redis (`vie serve` does).
"""

import ctypes
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import unittest

from vietest import HOST, RawConn, VieTestCase, run_vie, scaled, start_server

REDIS_BIN = shutil.which("redis-server")


def setUpModule():
    if REDIS_BIN is None:
        raise unittest.SkipTest(
            "redis-server is not installed (Debian package redis-server): "
            "the Redis backend integration tests do not run")


def die_with_parent():
    """In the child: a test run that is killed leaves no redis-server behind."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Redis:
    """A redis-server of our own on a free loopback port."""

    def __init__(self, *extra, port=None):
        self.extra = extra
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            [REDIS_BIN, "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--bind", HOST] + list(extra),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent)
        self.password = None
        for a, b in zip(extra, extra[1:]):
            if a == "--requirepass":
                self.password = b
        deadline = time.monotonic() + scaled(10)
        while time.monotonic() < deadline:
            try:
                if self.command("PING") == "PONG":
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise AssertionError("redis-server on port %d did not answer PING" % self.port)

    @property
    def address(self):
        return "%s:%d" % (HOST, self.port)

    def command(self, *args):
        """One command on a fresh connection; the reply (str, int, list)."""
        with socket.create_connection((HOST, self.port), timeout=scaled(2)) as s:
            f = s.makefile("rb")
            cmds = [args]
            if self.password:
                cmds.insert(0, ("AUTH", self.password))
            for c in cmds:
                out = b"*%d\r\n" % len(c)
                for a in c:
                    a = a if isinstance(a, bytes) else str(a).encode()
                    out += b"$%d\r\n%s\r\n" % (len(a), a)
                s.sendall(out)
            replies = [self._read(f) for _ in cmds]
            return replies[-1]

    def _read(self, f):
        line = f.readline()
        if not line:
            raise OSError("redis closed the connection")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise AssertionError("redis error: %s" % rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = f.read(n + 2)[:-2]
            return data.decode("latin-1")
        if t == b"*":
            return [self._read(f) for _ in range(int(rest))]
        raise AssertionError("bad reply %r" % line)

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


    def restart(self):
        """A new server on the same port (empty: keys and scripts gone)."""
        self.stop()
        again = Redis(*self.extra, port=self.port)
        self.proc = again.proc


def start_redis(testcase, *extra):
    r = Redis(*extra)
    testcase.addCleanup(r.stop)
    return r


def write_yaml(testcase, text):
    fd, path = tempfile.mkstemp(prefix="vie-rlr-", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    testcase.addCleanup(os.unlink, path)
    return path


def request(port, path, key="k", conn=None):
    req = ("GET %s HTTP/1.1\r\nHost: x\r\nX-Key: %s\r\n\r\n" % (path, key)).encode()
    if conn is not None:
        conn.send(req)
        return conn.read_response()
    with RawConn(port) as c:
        c.send(req)
        return c.read_response()


def metrics(port):
    with RawConn(port) as c:
        c.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        return c.read_response().body.decode()


def limiter_yaml(routes):
    """middleware + routes for limiters given as (name, path, extra yaml lines)."""
    mw, rt = [], []
    for name, path, extra in routes:
        mw.append("  - name: %s\n    type: rate_limit\n    key: header\n    header: X-Key\n"
                  "    backend: redis\n%s" % (name, "".join("    %s\n" % l for l in extra)))
        rt.append("  - method: GET\n    path: %s\n    middleware: [%s]\n"
                  "    respond: {status: 200, body: \"ok\\n\"}\n" % (path, name))
    return ("middleware:\n%s  - type: metrics\npipeline: [metrics]\nroutes:\n%s"
            % ("".join(mw), "".join(rt)))


CONNECTED = r"rate_limit: Redis at %s: connected, db 0"


class SharedLimit(VieTestCase):
    N = 5
    M = 20

    def test_two_servers_enforce_one_limit(self):
        redis = start_redis(self)
        text = limiter_yaml([("global", "/g", [
            "rate: 1/h", "burst: %d" % self.N,
            "redis: {address: \"%s\", prefix: \"it:shared:\", timeout: 1s}" % redis.address])])
        path = write_yaml(self, text)
        a = start_server(self, "-c", path, "--workers", "1")
        b = start_server(self, "-c", path, "--workers", "0")
        for s in (a, b):
            self.assertIsNotNone(s.wait_log(CONNECTED % re.escape(redis.address), scaled(5)),
                                 s.log())
        got = []
        for i in range(self.M):
            srv = (a, b)[i % 2]
            got.append((srv is a, request(srv.port, "/g", "one")))
        ok = [r for _, r in got if r.status == 200]
        self.assertEqual(len(ok), self.N, [r.status for _, r in got])
        # sequential requests: the shared bucket goes down one by one,
        # whichever server asked
        self.assertEqual([r.header("RateLimit-Remaining") for r in ok],
                         [str(n) for n in range(self.N - 1, -1, -1)])
        self.assertEqual([r.status for _, r in got[:self.N]], [200] * self.N)
        for _, r in got[self.N:]:
            doc = self.assert_problem(r, 429)
            self.assertEqual(doc["detail"], "rate limit exceeded (%d requests at once, 1 per "
                                            "hour); retry in 3600 s" % self.N)
            self.assertEqual(r.header("Retry-After"), "3600")
            self.assertEqual(r.header("RateLimit-Limit"), str(self.N))
            self.assertEqual(r.header("RateLimit-Remaining"), "0")
        # each server counted its own decisions; together: N and M - N
        allowed = limited = 0
        for s in (a, b):
            text = metrics(s.port)
            allowed += int(re.search(
                r'vie_ratelimit_decisions_total\{limiter="global",result="allowed"\} (\d+)',
                text).group(1))
            limited += int(re.search(
                r'vie_ratelimit_decisions_total\{limiter="global",result="limited"\} (\d+)',
                text).group(1))
            self.assertIn('vie_ratelimit_backend_errors_total{limiter="global",kind="timeout"} 0\n',
                          text)
        self.assertEqual((allowed, limited), (self.N, self.M - self.N))
        # one key in Redis, expiring about when the bucket is full again
        self.assertEqual(redis.command("KEYS", "it:shared:*"), ["it:shared:header:one"])
        pttl = redis.command("PTTL", "it:shared:header:one")
        self.assertTrue(self.N * 3600 * 1000 - 60000 < pttl <= self.N * 3600 * 1000 + 1000, pttl)


class BackendErrors(VieTestCase):
    def incident_lines(self, srv, name):
        """The incident lines of a limiter, once the first has arrived (the
        log is read by another thread) and a moment for any more."""
        pattern = r'rate_limit "%s": Redis backend .* failing \(' % re.escape(name)
        if srv.wait_log(pattern, scaled(3)):
            time.sleep(0.2)
        return [l for l in srv.log_lines() if re.search(pattern, l)]

    def recovery_lines(self, srv, name):
        return [l for l in srv.log_lines()
                if 'rate_limit "%s": Redis backend' % name in l and "answers again;" in l]

    def test_connection_refused_allow_and_deny(self):
        dead = "%s:%d" % (HOST, free_port())  # nothing listens there
        text = limiter_yaml([
            ("open", "/allow", ["rate: 1/h", "redis: {address: \"%s\"}" % dead,
                                "on_backend_error: allow"]),
            ("closed", "/deny", ["rate: 1/h", "redis: {address: \"%s\"}" % dead,
                                 "on_backend_error: deny"]),
        ])
        srv = start_server(self, "-c", write_yaml(self, text))
        n = 6
        with RawConn(srv.port) as c:
            for i in range(n):
                r = request(srv.port, "/allow", conn=c)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.body, b"ok\n")
                for h in ("RateLimit-Limit", "RateLimit-Remaining", "Retry-After"):
                    self.assertIsNone(r.header(h), r)
                r = request(srv.port, "/deny", conn=c)
                doc = self.assert_problem(r, 503)
                self.assertEqual(doc["detail"], "rate limit backend unavailable (connection); "
                                                "refused by on_backend_error: deny")
                self.assertEqual(r.header("Retry-After"), "1")
                self.assertIsNone(r.header("RateLimit-Remaining"))
                time.sleep(0.05)  # across reconnect attempts
        text = metrics(srv.port)
        for name in ("open", "closed"):
            self.assertIn('vie_ratelimit_backend_errors_total{limiter="%s",kind="connection"} %d\n'
                          % (name, n), text)
            self.assertIn('vie_ratelimit_backend_errors_total{limiter="%s",kind="timeout"} 0\n'
                          % name, text)
            self.assertIn('vie_ratelimit_decisions_total{limiter="%s",result="allowed"} 0\n'
                          % name, text)
        # one line per incident, not one per request
        lines = self.incident_lines(srv, "open")
        self.assertEqual(len(lines), 1, srv.log())
        self.assertIn("failing (connection: cannot connect: Connection refused): requests are "
                      "let through (on_backend_error: allow)", lines[0])
        self.assertIn(" WARN ", lines[0])
        lines = self.incident_lines(srv, "closed")
        self.assertEqual(len(lines), 1, srv.log())
        self.assertIn("requests are refused with 503 (on_backend_error: deny)", lines[0])
        self.assertEqual(len([l for l in srv.log_lines() if " WARN " in l]), 2, srv.log())

    def test_stopped_redis_times_out_then_recovers(self):
        redis = start_redis(self)
        text = limiter_yaml([
            ("strict", "/deny", ["rate: 1/h", "burst: 3", "on_backend_error: deny",
                                 "redis: {address: \"%s\", timeout: 150ms}" % redis.address]),
            ("lenient", "/allow", ["rate: 1/h", "burst: 3",
                                   "redis: {address: \"%s\", timeout: 150ms}" % redis.address]),
        ])
        srv = start_server(self, "-c", write_yaml(self, text))
        self.assertIsNotNone(srv.wait_log(CONNECTED % re.escape(redis.address), scaled(5)),
                             srv.log())
        r = request(srv.port, "/deny", "a")
        self.assertEqual((r.status, r.header("RateLimit-Remaining")), (200, "2"))
        redis.pause()
        try:
            with RawConn(srv.port) as c:
                for _ in range(3):
                    t0 = time.monotonic()
                    r = request(srv.port, "/deny", "s", conn=c)
                    waited = time.monotonic() - t0
                    doc = self.assert_problem(r, 503)
                    self.assertEqual(doc["detail"], "rate limit backend unavailable (timeout); "
                                                    "refused by on_backend_error: deny")
                    self.assertGreaterEqual(waited, 0.145)
                    r = request(srv.port, "/allow", "s", conn=c)
                    self.assertEqual(r.status, 200, r)
                    self.assertIsNone(r.header("RateLimit-Remaining"))
            text = metrics(srv.port)
        finally:
            redis.resume()
        for name in ("strict", "lenient"):
            self.assertIn('vie_ratelimit_backend_errors_total{limiter="%s",kind="timeout"} 3\n'
                          % name, text)
            self.assertIn('vie_ratelimit_backend_errors_total{limiter="%s",kind="connection"} 0\n'
                          % name, text)
        lines = self.incident_lines(srv, "strict")
        self.assertEqual(len(lines), 1, srv.log())
        self.assertIn("failing (timeout: no answer within 150 ms)", lines[0])
        self.assertEqual(len(self.incident_lines(srv, "lenient")), 1, srv.log())
        self.assertEqual(self.recovery_lines(srv, "strict"), [])
        # Redis answers again: decisions come from it (key a kept its
        # state: 1 of 3 used), and an answer a second after the last
        # error ends the incident, logged once.
        deadline = time.monotonic() + scaled(10)
        seen = []
        while time.monotonic() < deadline and not self.recovery_lines(srv, "strict"):
            r = request(srv.port, "/deny", "b")
            seen.append(r.status)
            time.sleep(0.25)
        self.assertEqual(len(self.recovery_lines(srv, "strict")), 1, srv.log())
        self.assertIn("during the", self.recovery_lines(srv, "strict")[0])
        # the 3 while stopped, and any that timed out while it caught up
        m = re.search(r"(\d+) requests were decided by on_backend_error \((\d+) timeout, 0 "
                      r"connection, 0 reply\)", self.recovery_lines(srv, "strict")[0])
        self.assertIsNotNone(m, srv.log())
        self.assertEqual(m.group(1), m.group(2))
        self.assertGreaterEqual(int(m.group(1)), 3)
        self.assertIn(200, seen)
        r = request(srv.port, "/deny", "a")
        self.assertEqual((r.status, r.header("RateLimit-Remaining")), (200, "1"), r)
        self.assertEqual(len(self.incident_lines(srv, "strict")), 1, srv.log())

    def test_restarted_redis_is_reconnected(self):
        redis = start_redis(self)
        text = limiter_yaml([
            ("rl", "/r", ["rate: 1/h", "burst: 4", "on_backend_error: deny",
                          "redis: {address: \"%s\", timeout: 500ms}" % redis.address]),
        ])
        srv = start_server(self, "-c", write_yaml(self, text))
        self.assertIsNotNone(srv.wait_log(CONNECTED % re.escape(redis.address), scaled(5)),
                             srv.log())
        for want in ("3", "2"):
            r = request(srv.port, "/r", "k")
            self.assertEqual((r.status, r.header("RateLimit-Remaining")), (200, want), r)
        redis.stop()
        for _ in range(3):
            r = request(srv.port, "/r", "k")
            doc = self.assert_problem(r, 503)
            self.assertEqual(doc["detail"], "rate limit backend unavailable (connection); "
                                            "refused by on_backend_error: deny")
        redis.restart()
        # the worker connects again by itself (back-off: at most 2 s apart)
        deadline = time.monotonic() + scaled(10)
        while time.monotonic() < deadline:
            r = request(srv.port, "/r", "k")
            if r.status == 200:
                break
            time.sleep(0.1)
        # a new, empty server: the script was loaded again, the bucket is new
        self.assertEqual((r.status, r.header("RateLimit-Remaining")), (200, "3"), r)
        lines = self.incident_lines(srv, "rl")
        self.assertEqual(len(lines), 1, srv.log())
        self.assertIn("failing (connection: ", lines[0])
        self.assertRegex(metrics(srv.port),
                         r'vie_ratelimit_backend_errors_total\{limiter="rl",kind="connection"\} '
                         r'([3-9]|\d\d+)\n')

    def test_password_from_env(self):
        redis = start_redis(self, "--requirepass", "s3cret")
        text = limiter_yaml([
            ("authed", "/ok", ["rate: 1/h", "burst: 2", "redis: {address: \"%s\", password: "
                               "\"${RL_TEST_PASS}\", timeout: 1s}" % redis.address]),
            ("wrong", "/bad", ["rate: 1/h", "redis: {address: \"%s\", password: nope, db: 1}"
                               % redis.address]),
        ])
        srv = start_server(self, "-c", write_yaml(self, text), env={"RL_TEST_PASS": "s3cret"})
        self.assertIsNotNone(srv.wait_log(CONNECTED % re.escape(redis.address), scaled(5)),
                             srv.log())
        r = request(srv.port, "/ok", "p")
        self.assertEqual((r.status, r.header("RateLimit-Remaining")), (200, "1"), r)
        self.assertEqual(redis.command("EXISTS", "vie:rl:authed:header:p"), 1)
        r = request(srv.port, "/bad", "p")
        self.assertEqual(r.status, 200, r)  # allow: the default
        self.assertIsNone(r.header("RateLimit-Remaining"))
        lines = self.incident_lines(srv, "wrong")
        self.assertEqual(len(lines), 1, srv.log())
        self.assertRegex(lines[0], r"failing \(connection: AUTH failed: WRONGPASS")
        self.assertNotIn("nope", srv.log())  # the password is never logged


class ClientGone(VieTestCase):
    def test_clients_leave_while_pending(self):
        redis = start_redis(self)
        slow = ["rate: 1/h", "burst: 100", "on_backend_error: deny",
                "redis: {address: \"%s\", timeout: 1500ms}" % redis.address]
        text = limiter_yaml([("slow", "/p", slow), ("slow2", "/short", slow)])
        # a route whose deadline passes before the backend's timeout
        text = text.replace("    path: /short\n", "    path: /short\n    timeout: 200ms\n")
        srv = start_server(self, "-c", write_yaml(self, text))
        self.assertIsNotNone(srv.wait_log(CONNECTED % re.escape(redis.address), scaled(5)),
                             srv.log())
        redis.pause()
        try:
            conns = [RawConn(srv.port) for _ in range(12)]
            for i, c in enumerate(conns):
                c.send("GET /p HTTP/1.1\r\nHost: x\r\nX-Key: g%d\r\n\r\n" % (i % 3))
            time.sleep(0.2)  # parked on Redis
            for i, c in enumerate(conns):
                if i % 2:  # half with a reset instead of a FIN
                    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                      struct.pack("ii", 1, 0))
                c.close()
            t0 = time.monotonic()
            r = request(srv.port, "/short", "d")
            self.assertEqual(r.status, 504, r)
            self.assertLess(time.monotonic() - t0, 1.4)
            time.sleep(0.3)
        finally:
            redis.resume()
        # each request was parked on Redis when its client left (or its
        # deadline passed): the paths under test were taken
        self.assertIsNotNone(srv.wait_log("request cancelled while slow was pending", scaled(3),
                                          count=12), srv.log())
        self.assertIsNotNone(srv.wait_log(r"deadline exceeded while slow2 was pending", 1),
                             srv.log())
        # the late replies come and are dropped; the server serves on
        deadline = time.monotonic() + scaled(10)
        r = None
        while time.monotonic() < deadline:
            r = request(srv.port, "/p", "after")
            if r.status == 200:
                break
            time.sleep(0.1)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("RateLimit-Remaining"), "99")
        # the cancelled requests were still counted by Redis (their
        # commands had been sent), never answered to anyone
        self.assertEqual(redis.command("EXISTS", "vie:rl:slow:header:g0"), 1)
        self.assertNotIn("stale vie_ref", srv.log())
        self.assertNotIn("still waiting on Redis", srv.log())
        srv.stop(self)
        self.assertNotIn("still waiting", srv.log())


class Check(VieTestCase):
    def test_check_does_not_connect_serve_does(self):
        lsock = socket.socket()
        lsock.bind((HOST, 0))
        lsock.listen(8)
        self.addCleanup(lsock.close)
        addr = "%s:%d" % (HOST, lsock.getsockname()[1])
        path = write_yaml(self, limiter_yaml([
            ("rl", "/x", ["rate: 10/s", "redis: {address: \"%s\"}" % addr])]))
        p = run_vie(["check", "-c", path])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r"\brl\s+guard")
        lsock.settimeout(0.5)
        with self.assertRaises(socket.timeout):
            lsock.accept()
        # the same config served: each worker connects at start
        start_server(self, "-c", path)
        lsock.settimeout(scaled(5))
        c, _ = lsock.accept()
        c.close()


if __name__ == "__main__":
    unittest.main()
