"""The slo built-in configured in YAML and served by the real binary with
a worker process (--workers 1), its windows scaled down (window_scale
0.001: the fast alert's windows are 3.6 s and 300 ms, the slow one's
21.6 s and 1.8 s; evaluations every 20 ms): a route made to fail by the
fault built-in burns its error budget, the alerts fire in /debug/slo and
/metrics, after `hold` evaluations the route answers its fallback (503
problem+json with Retry-After) while others are served, and once the
failures stop the route is served again. Failures come from
header-driven faults (a trusted client) in one test, and from a fault
layer aborting every request that a config reload (SIGHUP) turns off in
the other, which also shows the counts surviving the reload. `vie check`
refuses bad keys with their position. Every wait is bounded."""

import json
import os
import re
import shutil
import signal
import tempfile
import textwrap
import time
import unittest

from vietest import VieTestCase, RawConn, run_vie, scaled, start_server

EXIT_CONFIG = 3

CONFIG = """\
server:
  workers: 1
middleware:
  - {{name: metrics, type: metrics}}
  - name: chaos
    type: fault
{fault}
  - name: slo
    type: slo
    objectives:
      - {{name: flaky, route: "GET /flaky", availability: 99}}
    window_scale: 0.001
    evaluate_every: 20ms
    hold: 3
    actions:
      degrade:
        - {{route: "GET /flaky"}}
pipeline: [metrics, slo, chaos]
routes:
  - {{path: /flaky, respond: {{body: "ok\\n"}}}}
  - {{path: /other, respond: {{body: "other\\n"}}}}
"""

HEADER_FAULTS = """\
enabled: true
trusted_cidrs: [127.0.0.0/8, "::1/128"]
"""

ALWAYS_FAIL = """\
enabled: true
abort: {percent: 100, status: 500}
routes: ["GET /flaky"]
"""

FAULT_OFF = """\
enabled: false
"""

DEGRADED = "GET /flaky is degraded by slo slo while its error budget burns: retry later"


def indent(text):
    return "".join("    " + line + "\n" for line in textwrap.dedent(text).strip("\n").splitlines())


def get(port, path, headers=None):
    extra = "".join("%s: %s\r\n" % kv for kv in (headers or {}).items())
    with RawConn(port, timeout=scaled(5)) as c:
        c.send("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, extra))
        return c.read_response()


def debug_slo(port):
    r = get(port, "/debug/slo")
    assert r.status == 200, r
    assert r.header("Content-Type") == "application/json", r
    doc = json.loads(r.body.decode())
    assert [s["name"] for s in doc["slos"]] == ["slo"], doc
    return doc["slos"][0]


def metrics(port):
    r = get(port, "/metrics")
    assert r.status == 200, r
    return r.body.decode()


def metric(text, series):
    """The value of one series line, or None."""
    m = re.search(r"^%s (\S+)$" % re.escape(series), text, re.M)
    return float(m.group(1)) if m else None


class SloTest(VieTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="vie-slo-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, "vie.yaml")

    def write(self, fault):
        with open(self.path, "w") as f:
            f.write(CONFIG.format(fault=indent(fault)))
        chk = run_vie(["check", "-c", self.path])
        self.assertEqual(chk.returncode, 0, chk.stdout + chk.stderr)

    def serve(self, fault):
        self.write(fault)
        return start_server(self, "-c", self.path, "--workers", "1")

    def assert_degraded(self, r):
        doc = self.assert_problem(r, 503)
        self.assertEqual(doc["detail"], DEGRADED)
        self.assertEqual(r.header("Retry-After"), "1")  # hold x evaluate_every, at least 1 s

    def until(self, what, fn, timeout):
        """Call fn until it returns something true (bounded); return it."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            v = fn()
            if v:
                return v
            if time.monotonic() >= deadline:
                self.fail("%s: not within %.1f s" % (what, scaled(timeout)))
            time.sleep(0.02)

    def wait_recovered(self, srv):
        """/flaky is served again, and the log and /debug/slo say why."""
        self.until("/flaky served again", lambda: get(srv.port, "/flaky").status == 200, 10)
        self.assertIsNotNone(
            srv.wait_log(r"slo slo: action degrade GET /flaky stopped: the route is served "
                         r"again \(no alert for 3 evaluations; fast [0-9.]+x over 1h, 0x over "
                         r"5m \(flaky/availability\); slow [0-9.]+x over 6h, 0x over 30m",
                         scaled(5)),
            srv.log())
        s = debug_slo(srv.port)
        self.assertFalse(s["actions_in_force"])
        self.assertEqual(s["actions"][0]["in_force"], False)
        self.assertEqual(get(srv.port, "/flaky").body, b"ok\n")

    # -- header-driven faults --

    def test_failures_trip_the_alert_degrade_the_route_and_it_recovers(self):
        srv = self.serve(HEADER_FAULTS)
        s = debug_slo(srv.port)
        self.assertEqual(
            (s["window_scale"], s["evaluate_every_ms"], s["hold"], s["bucket_ms"]),
            (0.001, 20, 3, 25))
        self.assertEqual([(a["name"], a["long"], a["short"], a["burn"]) for a in s["alerts"]],
                         [("fast", "1h", "5m", 14.4), ("slow", "6h", "30m", 6)])
        self.assertFalse(s["actions_in_force"])
        for _ in range(20):
            self.assertEqual(get(srv.port, "/flaky").status, 200)

        # Failures until the layer answers in the route's place: 50% bad
        # against a 1% budget burns 50x, past both alerts.
        fail = {"X-Vie-Fault-Abort": "500"}
        failed = 0

        def one_failure():
            nonlocal failed
            r = get(srv.port, "/flaky", fail)
            if r.status == 500:
                failed += 1
                return None
            return r

        r = self.until("the route degraded", one_failure, 10)
        self.assert_degraded(r)
        self.assertGreaterEqual(failed, 1)
        self.assertIsNotNone(
            srv.wait_log(r"worker 0\.0 slo slo: alert (fast|slow) firing: [0-9.]+x over \w+ and "
                         r"[0-9.]+x over \w+ \(factor [0-9.]+\) on flaky/availability",
                         scaled(2)),
            srv.log())
        started = srv.wait_log(r"slo slo: action degrade GET /flaky started: answering 503 with "
                               r"Retry-After 1 \(alert (fast|slow) held 3 evaluations; ",
                               scaled(2))
        self.assertIsNotNone(started, srv.log())

        # In force: the handler is not reached, other routes are served,
        # and the degraded answers are not measured.
        self.assert_degraded(get(srv.port, "/flaky"))
        self.assertEqual(get(srv.port, "/other").body, b"other\n")
        s = debug_slo(srv.port)
        self.assertTrue(s["actions_in_force"])
        (act,) = s["actions"]
        self.assertEqual((act["action"], act["target"], act["status"], act["in_force"],
                          act["started"]), ("degrade", "GET /flaky", 503, True, 1))
        self.assertGreaterEqual(act["answered"], 2)
        (obj,) = s["objectives"]
        self.assertEqual((obj["name"], obj["route"], obj["sli"], obj["objective"]),
                         ("flaky", "GET /flaky", "availability", 99))
        self.assertEqual(obj["requests"], {"good": 20, "bad": failed})
        win = {w["window"]: w for w in obj["windows"]}
        self.assertEqual(sorted(win), ["1h", "30m", "5m", "6h"])
        # The 6 h window (21.6 s) holds every request measured so far.
        self.assertEqual((win["6h"]["good"], win["6h"]["bad"]), (20, failed))
        self.assertAlmostEqual(win["6h"]["burn_rate"], failed / (20 + failed) / 0.01, places=3)
        self.assertTrue(any(a["streak"] >= 3 for a in s["alerts"]), s["alerts"])

        m = metrics(srv.port)
        self.assertEqual(
            metric(m, 'vie_slo_actions_total{slo="slo",action="degrade",target="GET /flaky"}'), 1)
        self.assertEqual(
            metric(m, 'vie_slo_requests_total{slo="slo",objective="flaky",sli="availability",'
                      'result="bad"}'), failed)
        self.assertEqual(
            metric(m, 'vie_slo_requests_total{slo="slo",objective="flaky",sli="availability",'
                      'result="good"}'), 20)
        self.assertGreaterEqual(metric(m, 'vie_slo_degraded_total{slo="slo",route="GET /flaky"}'),
                                2)
        burn6h = metric(m, 'vie_slo_burn_rate{slo="slo",objective="flaky",sli="availability",'
                           'window="6h"}')
        self.assertAlmostEqual(burn6h, failed / (20 + failed) / 0.01, places=3)
        self.assertEqual(metric(m, 'vie_slo_problems{slo="slo"}'), 0)
        # The slow alert's short window is 1.8 s: it still fires (the fast
        # one's 300 ms may have drained already).
        self.assertEqual(metric(m, 'vie_slo_alert_firing{slo="slo",alert="slow"}'), 1)

        # The failures stop (the clients no longer ask for them): the short
        # windows drain while the route is degraded, the alerts stop, and
        # after 3 quiet evaluations the route is served again.
        self.wait_recovered(srv)
        m = metrics(srv.port)
        self.assertEqual(metric(m, 'vie_slo_alert_firing{slo="slo",alert="fast"}'), 0)
        self.assertEqual(metric(m, 'vie_slo_alert_firing{slo="slo",alert="slow"}'), 0)
        self.assertIsNotNone(srv.wait_log(r"slo slo: alert slow stopped firing", scaled(1)))

    # -- a fault layer, turned off by a reload --

    def test_a_reload_stops_the_failures_and_keeps_the_counts(self):
        srv = self.serve(ALWAYS_FAIL)
        for _ in range(5):
            self.assertEqual(get(srv.port, "/other").status, 200)

        def failing_or_degraded():
            r = get(srv.port, "/flaky")
            if r.status == 500:
                self.assertEqual(r.json()["detail"], "fault injected by chaos")
                return None
            return r

        self.assert_degraded(self.until("the route degraded", failing_or_degraded, 10))
        self.assertIsNotNone(
            srv.wait_log(r"slo slo: action degrade GET /flaky started", scaled(2)), srv.log())
        bad = debug_slo(srv.port)["objectives"][0]["requests"]["bad"]
        self.assertGreaterEqual(bad, 1)

        # The fix ships as a config change: the fault layer is off.
        self.write(FAULT_OFF)
        srv.signal(signal.SIGHUP)
        self.assertIsNotNone(srv.wait_log(r"supervisor: worker 0\.1 started", scaled(10)),
                             srv.log())
        self.assertIsNotNone(
            srv.wait_log(r"slo slo: counts carried over from the previous config", scaled(2)),
            srv.log())
        self.assertIsNotNone(srv.wait_log(r"fault chaos: disabled", scaled(2)), srv.log())
        # The old generation drains and exits; the new one answers with the
        # counts of the old (a fresh layer would start from 0).
        self.assertIsNotNone(srv.wait_log(r"worker 0 \(pid \d+\) drained and exited", scaled(10)),
                             srv.log())
        s = debug_slo(srv.port)
        self.assertGreaterEqual(s["objectives"][0]["requests"]["bad"], bad)
        self.wait_recovered(srv)
        s = debug_slo(srv.port)
        self.assertGreaterEqual(s["objectives"][0]["requests"]["bad"], bad)
        for _ in range(10):
            self.assertEqual(get(srv.port, "/flaky").body, b"ok\n")
        m = metrics(srv.port)
        self.assertEqual(
            metric(m, 'vie_slo_requests_total{slo="slo",objective="flaky",sli="availability",'
                      'result="bad"}'), s["objectives"][0]["requests"]["bad"])

    # -- vie check --

    def test_check_points_at_the_bad_key(self):
        cases = [
            ("      - {name: flaky, route: \"GET /flaky\", availability: 100}",
             r':12:58: middleware "slo": key "objectives\[0\]\.availability": expected a '
             r'percentage above 0 and below 100 \(100% leaves no error budget\), got 100'),
            ("      - {name: flaky, route: \"GET /flaky\", availabilty: 99}",
             r':12:44: unknown key "objectives\[0\]\.availabilty" in middleware "slo"; did you '
             r'mean "objectives\[0\]\.availability"\?'),
        ]
        for line, want in cases:
            text = CONFIG.format(fault=indent(FAULT_OFF)).replace(
                '      - {name: flaky, route: "GET /flaky", availability: 99}', line)
            with open(self.path, "w") as f:
                f.write(text)
            chk = run_vie(["check", "-c", self.path])
            self.assertEqual(chk.returncode, EXIT_CONFIG, chk.stdout + chk.stderr)
            self.assertRegex(chk.stderr, re.escape(self.path) + want)


if __name__ == "__main__":
    unittest.main()
