"""The fault built-in configured in YAML and served by the real binary:
a delay parks one request while the loop answers others at once, aborts
come by percentage and replay per seed, header-driven faults obey
trusted_cidrs (the client is 127.0.0.1), max_active_faults holds across
workers, /metrics shows the counters, and `vie check` refuses bad keys
with their position."""

import os
import re
import shutil
import tempfile
import textwrap
import threading
import time
import unittest

from vietest import VieTestCase, RawConn, run_vie, scaled, start_server

EXIT_CONFIG = 3

BASE = """\
server:
  workers: 0
middleware:
  - name: metrics
    type: metrics
  - name: chaos
    type: fault
{fault}
pipeline: [metrics, chaos]
routes:
  - {{path: /slow, respond: {{body: "slow\\n"}}}}
  - {{path: /fast, respond: {{body: "fast\\n"}}}}
  - {{path: /items/:id, respond: {{body: "item\\n"}}}}
"""


def indent(text):
    """The fault instance's keys, beside its name and type."""
    lines = textwrap.dedent(text).strip("\n").splitlines()
    return "".join("    " + line + "\n" for line in lines)


def request(port, path, headers=None, timeout=None):
    """One GET on its own connection: (response, seconds it took)."""
    extra = "".join("%s: %s\r\n" % kv for kv in (headers or {}).items())
    t0 = time.monotonic()
    with RawConn(port, timeout=timeout) as c:
        c.send("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, extra))
        r = c.read_response()
    return r, time.monotonic() - t0


def metrics(port):
    r, _ = request(port, "/metrics")
    assert r.status == 200, r
    return r.body.decode()


class FaultTest(VieTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="vie-fault-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def config(self, fault, name="vie.yaml", base=BASE):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(base.format(fault=indent(fault)))
        return path

    def serve(self, fault, *flags, base=BASE):
        path = self.config(fault, base=base)
        chk = run_vie(["check", "-c", path])
        self.assertEqual(chk.returncode, 0, chk.stdout + chk.stderr)
        return start_server(self, "-c", path, *flags)

    # -- delays --

    def test_delay_parks_one_route_while_another_is_answered_at_once(self):
        srv = self.serve(
            """
            enabled: true
            delay: {percent: 100, kind: fixed, ms: 600ms}
            routes: ["GET /slow"]
            """
        )
        done = {}

        def slow():
            done["slow"] = request(srv.port, "/slow", timeout=scaled(5))
            done["slow_end"] = time.monotonic()

        t = threading.Thread(target=slow)
        t.start()
        try:
            # Wait until the slow request is parked (the gauge says so).
            deadline = time.monotonic() + scaled(3)
            while "vie_fault_active{layer=\"chaos\"} 1\n" not in metrics(srv.port):
                self.assertLess(time.monotonic(), deadline, "the delay never started")
                time.sleep(0.01)
            fast, took = request(srv.port, "/fast")
            fast_end = time.monotonic()
        finally:
            t.join(scaled(5))
        self.assertEqual(fast.status, 200, fast)
        self.assertEqual(fast.body, b"fast\n")
        self.assertLess(took, scaled(0.2), "the fast route waited for the delayed one")
        slow_r, slow_took = done["slow"]
        self.assertEqual(slow_r.status, 200, slow_r)
        self.assertEqual(slow_r.body, b"slow\n")
        self.assertGreaterEqual(slow_took, 0.59)
        self.assertLess(slow_took, 0.6 + scaled(0.5))
        self.assertLess(fast_end, done["slow_end"], "the fast answer came after the slow one")
        m = metrics(srv.port)
        self.assertIn('\nvie_fault_delays_injected_total{layer="chaos"} 1\n', m)
        self.assertIn('\nvie_fault_active{layer="chaos"} 0\n', m)

    def test_lognormal_delays_have_their_median(self):
        srv = self.serve(
            """
            enabled: true
            seed: 7
            delay: {percent: 100, kind: lognormal, p50_ms: 60ms, p99_ms: 150ms}
            routes: [/items/:id]
            """
        )
        times = []
        for i in range(21):
            r, took = request(srv.port, "/items/%d" % i)
            self.assertEqual(r.status, 200, r)
            times.append(took)
        times.sort()
        # median 60 ms; 21 draws put the sample median within ~15% of it
        self.assertGreater(times[10], 0.045)
        self.assertLess(times[10], 0.08 * scaled(1))
        self.assertLess(times[-1], 0.5 * scaled(1))

    # -- aborts --

    def run_aborts(self, seed, n=400):
        srv = self.serve(
            """
            enabled: true
            seed: %d
            abort: {percent: 30, status: 503}
            routes: [/fast]
            """
            % seed
        )
        statuses = []
        with RawConn(srv.port) as c:
            for _ in range(n):
                c.send("GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
                r = c.read_response()
                statuses.append(r.status)
                if r.status == 503:
                    doc = self.assert_problem(r, 503)
                    self.assertEqual(doc["detail"], "fault injected by chaos")
                else:
                    self.assertEqual((r.status, r.body), (200, b"fast\n"))
        m = metrics(srv.port)
        self.assertIn(
            '\nvie_fault_aborts_injected_total{layer="chaos"} %d\n' % statuses.count(503), m
        )
        srv.stop(self)
        return statuses

    def test_aborts_by_percentage_replay_with_the_seed(self):
        first = self.run_aborts(1234)
        # 30% of 400: mean 120, standard deviation 9.2
        self.assertGreaterEqual(first.count(503), 90)
        self.assertLessEqual(first.count(503), 150)
        self.assertEqual(self.run_aborts(1234), first, "the same seed gave other faults")
        self.assertNotEqual(self.run_aborts(4321), first)

    def test_abort_after_delay(self):
        srv = self.serve(
            """
            enabled: true
            delay: {percent: 100, kind: uniform, min_ms: 100ms, max_ms: 150ms}
            abort: {percent: 100, status: 504}
            match: {header: X-Chaos, value: "yes"}
            """
        )
        r, took = request(srv.port, "/fast", {"X-Chaos": "yes"})
        doc = self.assert_problem(r, 504)
        self.assertEqual(doc["detail"], "fault injected by chaos")
        self.assertGreaterEqual(took, 0.099)
        r, _ = request(srv.port, "/fast", {"X-Chaos": "no"})
        self.assertEqual((r.status, r.body), (200, b"fast\n"))
        r, _ = request(srv.port, "/fast")
        self.assertEqual((r.status, r.body), (200, b"fast\n"))
        m = metrics(srv.port)
        self.assertIn('\nvie_fault_delays_injected_total{layer="chaos"} 1\n', m)
        self.assertIn('\nvie_fault_aborts_injected_total{layer="chaos"} 1\n', m)

    # -- header-driven faults --

    def test_header_faults_from_a_trusted_client(self):
        srv = self.serve(
            """
            enabled: true
            trusted_cidrs: [127.0.0.0/8, "::1/128"]
            """
        )
        r, took = request(srv.port, "/fast", {"X-Vie-Fault-Delay": "300"})
        self.assertEqual((r.status, r.body), (200, b"fast\n"))
        self.assertGreaterEqual(took, 0.299)
        r, _ = request(srv.port, "/fast", {"X-Vie-Fault-Abort": "451"})
        doc = self.assert_problem(r, 451)
        self.assertEqual(doc["detail"], "fault injected by chaos")
        r, took = request(srv.port, "/fast", {"X-Vie-Fault-Delay": "200", "X-Vie-Fault-Abort": "500"})
        self.assert_problem(r, 500)
        self.assertGreaterEqual(took, 0.199)
        # A trusted client's malformed ask is answered, not ignored.
        r, _ = request(srv.port, "/fast", {"X-Vie-Fault-Delay": "soon"})
        doc = self.assert_problem(r, 400)
        self.assertEqual(
            doc["detail"], "X-Vie-Fault-Delay must be a number of milliseconds from 0 to 3600000"
        )
        r, _ = request(srv.port, "/fast", {"X-Vie-Fault-Abort": "302"})
        doc = self.assert_problem(r, 400)
        self.assertEqual(doc["detail"], "X-Vie-Fault-Abort must be a status from 400 to 599")
        r, _ = request(srv.port, "/fast", {"X-Vie-Fault-Delay": "3600001"})
        self.assert_problem(r, 400)
        m = metrics(srv.port)
        self.assertIn('\nvie_fault_delays_injected_total{layer="chaos"} 2\n', m)
        self.assertIn('\nvie_fault_aborts_injected_total{layer="chaos"} 2\n', m)
        self.assertIn('\nvie_fault_untrusted_headers_total{layer="chaos"} 0\n', m)

    def test_header_faults_from_an_untrusted_client_are_ignored(self):
        srv = self.serve(
            """
            enabled: true
            trusted_cidrs: [10.0.0.0/8]
            """
        )
        r, took = request(srv.port, "/fast", {"X-Vie-Fault-Delay": "1000"})
        self.assertEqual((r.status, r.body), (200, b"fast\n"))
        self.assertLess(took, scaled(0.5))
        r, _ = request(srv.port, "/fast", {"X-Vie-Fault-Abort": "500"})
        self.assertEqual((r.status, r.body), (200, b"fast\n"))
        r, _ = request(srv.port, "/fast", {"X-Vie-Fault-Delay": "soon"})
        self.assertEqual(r.status, 200)
        self.assertIsNotNone(
            srv.wait_log(
                r"INFO\s+fault chaos: fault headers from 127\.0\.0\.1 ignored: not in "
                r"trusted_cidrs",
                scaled(2),
            ),
            srv.log(),
        )
        m = metrics(srv.port)
        self.assertIn('\nvie_fault_untrusted_headers_total{layer="chaos"} 3\n', m)
        self.assertIn('\nvie_fault_delays_injected_total{layer="chaos"} 0\n', m)
        self.assertIn('\nvie_fault_aborts_injected_total{layer="chaos"} 0\n', m)

    # -- limits, workers, metrics --

    def test_max_active_faults_holds_across_workers(self):
        srv = self.serve(
            """
            enabled: true
            delay: {percent: 100, kind: fixed, ms: 800ms}
            routes: [/slow]
            max_active_faults: 1
            """,
            "--workers",
            "2",
        )
        results = []
        lock = threading.Lock()

        def one():
            r = request(srv.port, "/slow", timeout=scaled(5))
            with lock:
                results.append(r)

        threads = [threading.Thread(target=one) for _ in range(4)]
        for t in threads:
            t.start()
            time.sleep(0.02)
        for t in threads:
            t.join(scaled(5))
        self.assertEqual(len(results), 4)
        self.assertTrue(all(r.status == 200 for r, _ in results), results)
        slow = [took for _, took in results if took >= 0.79]
        self.assertEqual(len(slow), 1, [took for _, took in results])
        m = metrics(srv.port)
        self.assertIn('\nvie_fault_delays_injected_total{layer="chaos"} 1\n', m)
        self.assertIn('\nvie_fault_overflow_total{layer="chaos"} 3\n', m)
        self.assertIn('\nvie_fault_active{layer="chaos"} 0\n', m)

    def test_metrics_lines_and_the_startup_warning(self):
        srv = self.serve(
            """
            enabled: true
            seed: 5
            abort: {percent: 100, status: 502}
            routes: ["GET /items/:id"]
            """
        )
        for i in range(3):
            r, _ = request(srv.port, "/items/%d" % i)
            self.assert_problem(r, 502)
        r, _ = request(srv.port, "/fast")
        self.assertEqual(r.status, 200)
        m = metrics(srv.port)
        for line in (
            "# TYPE vie_fault_delays_injected_total counter",
            'vie_fault_delays_injected_total{layer="chaos"} 0',
            "# TYPE vie_fault_aborts_injected_total counter",
            'vie_fault_aborts_injected_total{layer="chaos"} 3',
            "# TYPE vie_fault_overflow_total counter",
            'vie_fault_overflow_total{layer="chaos"} 0',
            "# TYPE vie_fault_untrusted_headers_total counter",
            'vie_fault_untrusted_headers_total{layer="chaos"} 0',
            "# TYPE vie_fault_active gauge",
            'vie_fault_active{layer="chaos"} 0',
        ):
            self.assertIn("\n" + line + "\n", m)
        self.assertIsNotNone(
            srv.wait_log(r"WARN\s+fault chaos: ENABLED: delay 0% \(fixed\), abort 100% with 502", 1),
            srv.log(),
        )

    def test_disabled_passes_and_says_so(self):
        srv = self.serve(
            """
            enabled: false
            abort: {percent: 100}
            trusted_cidrs: [127.0.0.0/8]
            """
        )
        r, _ = request(srv.port, "/fast", {"X-Vie-Fault-Abort": "500"})
        self.assertEqual((r.status, r.body), (200, b"fast\n"))
        self.assertIsNotNone(srv.wait_log(r"INFO\s+fault chaos: disabled", 1), srv.log())
        self.assertNotIn("vie_fault", metrics(srv.port))

    # -- config errors --

    def test_check_points_at_the_bad_key(self):
        cases = [
            (
                "enabled: true\ntrusted_cidrs: [127.0.0.0/8, 10.0.0.1/8]",
                r':9:34: middleware "chaos" \(type fault\): key "trusted_cidrs": trusted_cidrs\[1\] '
                r'"10\.0\.0\.1/8": host bits are set after /8: did you mean 10\.0\.0\.0/8\?',
            ),
            (
                "enabled: true\ndelay: {percent: 10, kind: lognormal, p50_ms: 50ms}",
                r':9:12: middleware "chaos" \(type fault\): missing required key "delay\.p99_ms"',
            ),
            (
                "enabled: true\nabort: {percent: 101}",
                r':9:22: middleware "chaos" \(type fault\): key "abort\.percent": expected a percentage',
            ),
        ]
        for fault, want in cases:
            path = self.config(fault)
            chk = run_vie(["check", "-c", path])
            self.assertEqual(chk.returncode, EXIT_CONFIG, chk.stdout + chk.stderr)
            self.assertRegex(chk.stderr, re.escape(path) + want)


if __name__ == "__main__":
    unittest.main()
