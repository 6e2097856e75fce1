"""rate_limit from YAML on the real binary with two workers.

- the bucket table is in shared memory: of M rapid requests on one key,
  exactly N (the burst) pass, whichever worker serves them, and a shadow
  limiter's per-worker log lines prove both workers decided;
- the 429 carries Retry-After and the RateLimit-* fields, exactly;
- shadow mode (enforce: false) lets everything through without fields
  and counts shadow_limited in /metrics;
- `vie check` refuses a malformed Redis address, a bad rate and key:
  principal without auth, naming the file, line and column.
"""

import os
import re
import socket
import tempfile
import time
import unittest

from vietest import HOST, RawConn, VieTestCase, run_vie, scaled, start_server

WORKER_RE = re.compile(r"\b(worker \d+)\.\d+ ")


def write_yaml(testcase, text):
    fd, path = tempfile.mkstemp(prefix="vie-rl-", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    testcase.addCleanup(os.unlink, path)
    return path


ENFORCE_YAML = """\
server:
  workers: 2
middleware:
  - name: per_key
    type: rate_limit
    rate: 1/m            # one token a minute: nothing refills during a test
    burst: %(burst)d
    key: header
    header: X-Key
  - name: spy            # shadow, per route: each worker logs its first refusal
    type: rate_limit
    runs_before: [per_key]  # sees every request, also those per_key refuses
    rate: 1/h
    burst: 1
    key: route
    enforce: false
  - type: metrics
pipeline: [metrics]
routes:
  - method: GET
    path: /limited
    middleware: [per_key, spy]
    respond: {status: 200, body: "ok\\n"}
"""

SHADOW_YAML = """\
server:
  workers: 2
middleware:
  - name: shadow
    type: rate_limit
    rate: "10/h"
    burst: 2
    key: header
    header: X-Key
    enforce: false
  - type: metrics
pipeline: [metrics]
routes:
  - method: GET
    path: /shadow
    middleware: [shadow]
    respond: {status: 200, body: "ok\\n"}
"""


def burst_of_requests(port, key, m):
    """Open m connections first (so both workers accept some), then send
    one request on each and read every answer."""
    conns = [RawConn(port) for _ in range(m)]
    try:
        req = ("GET /limited HTTP/1.1\r\nHost: x\r\nX-Key: %s\r\n\r\n" % key).encode()
        for c in conns:
            c.send(req)
        return [c.read_response() for c in conns]
    finally:
        for c in conns:
            c.close()


def metrics(port):
    with RawConn(port) as c:
        c.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
    return r.body.decode()


class RateLimitAcrossWorkers(VieTestCase):
    BURST = 5
    M = 24

    def start(self, yaml_text):
        path = write_yaml(self, yaml_text)
        return start_server(self, "-c", path, "--workers", "2")

    def test_exactly_burst_pass_across_both_workers(self):
        srv = self.start(ENFORCE_YAML % {"burst": self.BURST})
        workers = set()
        total_ok = total_limited = 0
        # Each attempt is a fresh key; repeated (bounded) only until the
        # kernel has handed connections to both workers.
        for attempt in range(5):
            before = len(srv.log_lines())
            resps = burst_of_requests(srv.port, "k%d" % attempt, self.M)
            ok = [r for r in resps if r.status == 200]
            limited = [r for r in resps if r.status == 429]
            self.assertEqual(len(ok), self.BURST, [r.status for r in resps])
            self.assertEqual(len(limited), self.M - self.BURST)
            # every decision was atomic: the remaining counts are N-1..0
            self.assertEqual(
                sorted(int(r.header("RateLimit-Remaining")) for r in ok),
                list(range(self.BURST)),
            )
            total_ok += len(ok)
            total_limited += len(limited)
            lines = srv.wait_log(r"rate_limit \"spy\" \(enforce: false\) would have refused",
                                 scaled(2))
            self.assertIsNotNone(lines, srv.log())
            for line in srv.log_lines()[before:]:
                if "would have refused" in line:
                    m = WORKER_RE.search(line)
                    self.assertIsNotNone(m, line)
                    workers.add(m.group(1))
            if len(workers) == 2:
                break
            time.sleep(1.1)  # the spy logs at most once a second per worker
        self.assertEqual(len(workers), 2, "one worker took every connection:\n" + srv.log())
        text = metrics(srv.port)
        self.assertIn(
            'vie_ratelimit_decisions_total{limiter="per_key",result="allowed"} %d\n' % total_ok,
            text)
        self.assertIn(
            'vie_ratelimit_decisions_total{limiter="per_key",result="limited"} %d\n'
            % total_limited, text)
        self.assertIn('vie_ratelimit_evictions_total{limiter="per_key"} 0\n', text)

    def test_429_fields(self):
        srv = self.start(ENFORCE_YAML % {"burst": 3})
        t0 = time.monotonic()
        with RawConn(srv.port) as c:
            got = []
            for _ in range(4):
                c.send(b"GET /limited HTTP/1.1\r\nHost: x\r\nX-Key: one\r\n\r\n")
                got.append(c.read_response())
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, 1.0, "too slow for exact second values")
        for i, r in enumerate(got[:3]):
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.header("RateLimit-Limit"), "3")
            self.assertEqual(r.header("RateLimit-Remaining"), str(2 - i))
            self.assertEqual(r.header("RateLimit-Reset"), str(60 * (i + 1)))
            self.assertIsNone(r.header("Retry-After"))
        r = got[3]
        doc = self.assert_problem(r, 429)
        self.assertEqual(doc["title"], "Too Many Requests")
        self.assertEqual(doc["detail"],
                         "rate limit exceeded (3 requests at once, 1 per minute); retry in 60 s")
        self.assertEqual(r.header("Retry-After"), "60")
        self.assertEqual(r.header("RateLimit-Limit"), "3")
        self.assertEqual(r.header("RateLimit-Remaining"), "0")
        self.assertEqual(r.header("RateLimit-Reset"), "180")
        self.assertEqual(len(r.header_all("RateLimit-Limit")), 1)
        # another key is untouched
        with RawConn(srv.port) as c:
            c.send(b"GET /limited HTTP/1.1\r\nHost: x\r\nX-Key: two\r\n\r\n")
            r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("RateLimit-Remaining"), "2")

    def test_shadow_mode_passes_everything_and_counts(self):
        srv = self.start(SHADOW_YAML)
        conns = [RawConn(srv.port) for _ in range(10)]
        try:
            for c in conns:
                c.send(b"GET /shadow HTTP/1.1\r\nHost: x\r\nX-Key: s\r\n\r\n")
            resps = [c.read_response() for c in conns]
        finally:
            for c in conns:
                c.close()
        for r in resps:
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, b"ok\n")
            for h in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After"):
                self.assertIsNone(r.header(h), r)
        text = metrics(srv.port)
        self.assertIn('vie_ratelimit_decisions_total{limiter="shadow",result="allowed"} 2\n', text)
        self.assertIn('vie_ratelimit_decisions_total{limiter="shadow",result="limited"} 0\n', text)
        self.assertIn(
            'vie_ratelimit_decisions_total{limiter="shadow",result="shadow_limited"} 8\n', text)
        self.assertIsNotNone(
            srv.wait_log(r'WARN .*rate_limit "shadow" \(enforce: false\) would have refused a '
                         r"request on GET /shadow", scaled(2)),
            srv.log())


class RateLimitConfigErrors(VieTestCase):
    def check(self, yaml_text):
        path = write_yaml(self, yaml_text)
        p = run_vie(["check", "-c", path])
        return p, path

    def test_refused_configs(self):
        base = """\
middleware:
  - name: rl
    type: rate_limit
%s
pipeline: [rl]
routes:
  - method: GET
    path: /x
    respond: {status: 200, body: "x"}
"""
        cases = [
            ("    rate: 10/s\n    backend: redis\n    redis: {address: \"127.0.0.1:99999\"}",
             r':6:22: middleware "rl" \(type rate_limit\): key "redis.address": port "99999" is not '
             r'a number from 1 to 65535'),
            ("    rate: fast", r':4:11: middleware "rl" \(type rate_limit\): key "rate": expected requests per second'),
            ("    rate: 0/s", r':4:11: middleware "rl" \(type rate_limit\): key "rate": rate must be more than 0'),
            ("    rate: 10\n    key: header", r':\d+:\d+: .*key "header": required with key: header'),
            ("    rate: 10\n    burts: 2", r':5:5: .*unknown key "burts".*did you mean "burst"'),
        ]
        for params, pattern in cases:
            p, path = self.check(base % params)
            self.assertNotEqual(p.returncode, 0, (params, p.stdout, p.stderr))
            self.assertRegex(p.stderr, re.escape(path) + pattern, params)

    def test_principal_key_needs_auth(self):
        p, path = self.check("""\
middleware:
  - name: per_user
    type: rate_limit
    rate: 10/s
    key: principal
pipeline: [per_user]
routes:
  - method: GET
    path: /x
    respond: {status: 200, body: "x"}
""")
        self.assertNotEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn('layer per_user requires "auth", but no other layer has that name', p.stderr)

    def test_valid_config_is_accepted(self):
        p, _ = self.check("""\
middleware:
  - name: rl
    type: rate_limit
    rate: "6000/m"
    burst: 10
    key: ip
    max_keys: 1000
    enforce: true
    backend: local
pipeline: [rl]
routes:
  - method: GET
    path: /x
    respond: {status: 200, body: "x"}
""")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r"\brl\s+guard")


if __name__ == "__main__":
    unittest.main()
