"""The circuit_breaker built-in configured in YAML and served by the real
binary. A fault layer after the breaker aborts every request; the breaker
opens within its window (the failing calls are counted), serves its
fallback with Retry-After, /metrics shows it open, it goes half-open at
the first call after open_wait, and once the config is rewritten with the
fault off and the server gets SIGHUP (one worker under a supervisor: a
reload needs one), the remaining probes succeed and it closes: a real
HALF_OPEN -> CLOSED transition, since the state survived the reload.
Also: forced_open with a fallback file relative to the YAML, and `vie
check` refusing a zero half_open.max_wait with its position."""

import os
import re
import shutil
import signal
import tempfile
import time
import unittest

from vietest import VieTestCase, get, run_vie, scaled, start_server

EXIT_CONFIG = 3

CONFIG = """\
server:
  workers: 1
middleware:
  - name: metrics
    type: metrics
  - name: api
    type: circuit_breaker
    runs_before: [chaos]
    window: {{type: count, size: 10}}
    min_calls: 5
    failure_rate: 50
    open_wait: 500ms
    half_open: {{calls: 3, max_wait: 30s}}
  - name: chaos
    type: fault
    enabled: {fault}
    abort: {{percent: 100, status: 503}}
pipeline: [metrics]
routes:
  - path: /api/items
    middleware: [api, chaos]
    respond: {{body: "items\\n"}}
"""

OPEN_DETAIL = "circuit breaker api is open"
FAULT_DETAIL = "fault injected by chaos"


def metrics(port):
    r = get(port, "/metrics")
    assert r.status == 200, r
    return r.body.decode()


def series(text, name):
    """The value of one series line ("name{labels}"), or None."""
    m = re.search(r"^" + re.escape(name) + r" (\S+)$", text, re.M)
    return m.group(1) if m else None


class CircuitBreakerTest(VieTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="vie-cb-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def wait_line(self, srv, pattern, what):
        found = srv.wait_log(pattern, scaled(10))
        self.assertIsNotNone(found, "no log line %s (%r); log:\n%s" % (what, pattern, srv.log()))
        return found

    def test_trips_serves_the_fallback_half_opens_and_closes_after_a_reload(self):
        path = self.write("vie.yaml", CONFIG.format(fault="true"))
        chk = run_vie(["check", "-c", path])
        self.assertEqual(chk.returncode, 0, chk.stdout + chk.stderr)
        srv = start_server(self, "-c", path, "--workers", "1")
        self.wait_line(
            srv,
            r"INFO  circuit_breaker api: mode normal; window count of 10 calls; min_calls 5; "
            r"opens at failure rate >= 50% .*; open_wait 500ms; half_open 3 probes within 30s; "
            r"fallback 503 problem\+json; state CLOSED \(new\)$",
            "with the settings",
        )

        # Failing calls (the fault's 503) until the breaker answers instead.
        failing = 0
        fallback = None
        for _ in range(20):
            r = get(srv.port, "/api/items")
            doc = self.assert_problem(r, 503)
            if doc["detail"] == OPEN_DETAIL:
                fallback = r
                break
            self.assertEqual(doc["detail"], FAULT_DETAIL)
            self.assertIsNone(r.header("Retry-After"))
            failing += 1
        self.assertIsNotNone(fallback, "the breaker never opened; log:\n" + srv.log())
        self.assertEqual(failing, 5)  # min_calls calls, all failed
        self.assertEqual(fallback.header("Retry-After"), "1")  # under 500 ms, rounded up
        self.wait_line(
            srv,
            r"WARN  worker \S+ circuit_breaker api: CLOSED -> OPEN: failure rate 100\.0% >= 50% "
            r"over 5 calls \(slow 0\.0%\); open for 500ms$",
            "for the open",
        )
        m = metrics(srv.port)
        self.assertEqual(series(m, 'vie_circuit_state{breaker="api",state="open"}'), "1", m)
        self.assertEqual(series(m, 'vie_circuit_state{breaker="api",state="closed"}'), "0", m)
        self.assertEqual(series(m, 'vie_circuit_state_code{breaker="api"}'), "1", m)
        self.assertEqual(series(m, 'vie_circuit_calls_total{breaker="api",kind="failure"}'), "5")
        self.assertEqual(
            series(m, 'vie_circuit_calls_total{breaker="api",kind="not_permitted"}'), "1"
        )
        self.assertEqual(
            series(m, 'vie_circuit_transitions_total{breaker="api",from="closed",to="open"}'), "1"
        )

        # After open_wait, the first call is a probe; the fault still fails it.
        time.sleep(0.6)
        r = get(srv.port, "/api/items")
        self.assertEqual(self.assert_problem(r, 503)["detail"], FAULT_DETAIL)
        self.wait_line(
            srv,
            r"INFO  worker \S+ circuit_breaker api: OPEN -> HALF_OPEN: open_wait 500ms elapsed: "
            r"letting 3 probes through$",
            "for the half-open",
        )
        m = metrics(srv.port)
        self.assertEqual(series(m, 'vie_circuit_state{breaker="api",state="half_open"}'), "1", m)

        # The fault goes away with a reload; the breaker's state stays.
        self.write("vie.yaml", CONFIG.format(fault="false"))
        srv.signal(signal.SIGHUP)
        self.wait_line(
            srv,
            r"circuit_breaker api: mode normal; .*state HALF_OPEN \(kept from the previous "
            r"configuration\)$",
            "for the state kept by the reload",
        )
        self.wait_line(srv, r"fault chaos: disabled", "for the fault turned off")
        self.wait_line(
            srv, r"supervisor: worker 0 \(pid \d+\) drained and exited", "for the old worker"
        )
        for _ in range(2):  # the two probes left
            r = get(srv.port, "/api/items")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, b"items\n")
        self.wait_line(
            srv,
            r"INFO  worker \S+ circuit_breaker api: HALF_OPEN -> CLOSED: probes: failure rate "
            r"33\.3% < 50% and slow rate 0\.0% < 100% over 3 calls$",
            "for the close",
        )
        self.assertEqual(get(srv.port, "/api/items").status, 200)
        m = metrics(srv.port)
        self.assertEqual(series(m, 'vie_circuit_state{breaker="api",state="closed"}'), "1", m)
        self.assertEqual(series(m, 'vie_circuit_state_code{breaker="api"}'), "0", m)
        for frm, to in (("closed", "open"), ("open", "half_open"), ("half_open", "closed")):
            name = 'vie_circuit_transitions_total{breaker="api",from="%s",to="%s"}' % (frm, to)
            self.assertEqual(series(m, name), "1", m)
        self.assertEqual(series(m, 'vie_circuit_calls_total{breaker="api",kind="failure"}'), "6")
        self.assertEqual(series(m, 'vie_circuit_calls_total{breaker="api",kind="success"}'), "3")
        # Each transition was logged once.
        for t in ("CLOSED -> OPEN", "OPEN -> HALF_OPEN", "HALF_OPEN -> CLOSED"):
            n = sum(1 for l in srv.log_lines() if "circuit_breaker api: " + t + ":" in l)
            self.assertEqual(n, 1, t)
        srv.stop(self)

    def test_forced_open_serves_a_file_relative_to_the_yaml(self):
        self.write("busy.html", "<h1>busy</h1>\n")
        path = self.write(
            "vie.yaml",
            """\
middleware:
  - name: metrics
    type: metrics
  - name: gate
    type: circuit_breaker
    mode: forced_open
    fallback: {status: 503, file: busy.html, content_type: text/html, retry_after: 2m}
pipeline: [metrics]
routes:
  - path: /x
    middleware: [gate]
    respond: {body: "x\\n"}
""",
        )
        srv = start_server(self, "-c", path)
        r = get(srv.port, "/x")
        self.assertEqual(r.status, 503)
        self.assertEqual(r.body, b"<h1>busy</h1>\n")
        self.assertEqual(r.header("Content-Type"), "text/html")
        self.assertEqual(r.header("Retry-After"), "120")
        m = metrics(srv.port)
        self.assertEqual(series(m, 'vie_circuit_state{breaker="gate",state="forced_open"}'), "1")
        self.assertEqual(series(m, 'vie_circuit_state_code{breaker="gate"}'), "4")
        self.assertEqual(
            series(m, 'vie_circuit_calls_total{breaker="gate",kind="not_permitted"}'), "1"
        )

    def test_check_refuses_bad_settings_at_their_key(self):
        path = self.write(
            "vie.yaml",
            """\
middleware:
  - name: api
    type: circuit_breaker
    half_open: {calls: 3, max_wait: 0}
routes:
  - path: /x
    middleware: [api]
    respond: {body: "x\\n"}
""",
        )
        r = run_vie(["check", "-c", path])
        self.assertEqual(r.returncode, EXIT_CONFIG, r.stdout + r.stderr)
        self.assertIn(
            path + ':4:37: middleware "api" (type circuit_breaker): key "half_open.max_wait": '
            "must be above 0: without it a breaker whose probes never complete would stay "
            "half-open forever\n",
            r.stderr,
        )
        self.assertNotIn("refused: invalid argument", r.stderr)  # one error, one line


if __name__ == "__main__":
    unittest.main()
