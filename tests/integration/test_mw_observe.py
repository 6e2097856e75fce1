"""The observe built-ins (request_id, trace, access_log) configured in
YAML and served by the real binary: ids echoed and propagated, a W3C
trace continued across a hop, access log lines whose ids match the
response headers, SIGUSR1 reopening the log after a rotation, workers
appending whole lines with distinct ids, and `vie check` refusing bad
access_log settings with file:line:column."""

import calendar
import json
import os
import re
import shutil
import signal
import tempfile
import time
import unittest

from vietest import VieTestCase, get, run_vie, scaled, start_server

EXIT_CONFIG = 3
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TID = "4bf92f3577b34da6a3ce929d0e0e4736"
PID = "00f067aa0ba902b7"

CONFIG = """\
server:
  workers: {workers}
middleware:
  - name: rid
    type: request_id
  - name: trace
    type: trace
  - name: log
    type: access_log
    path: {log}
    flush: {flush}
    buffer_size: 64KiB
pipeline: [rid, trace, log]
routes:
  - path: /hello
    respond: {{status: 200, body: "hi\\n"}}
  - path: /items/:id
    respond: {{status: 201, body: "item\\n"}}
"""


def read_lines(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    return data.decode("utf-8").splitlines()


def wait_lines(path, n, timeout):
    """Poll until path holds at least n lines (bounded); returns them."""
    deadline = time.monotonic() + timeout
    lines = read_lines(path)
    while len(lines) < n and time.monotonic() < deadline:
        time.sleep(0.02)
        lines = read_lines(path)
    return lines


class ObserveTest(VieTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="vie-observe-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.log = os.path.join(self.dir, "access.log")

    def write_config(self, workers=0, flush="20ms", log=None, text=None):
        path = os.path.join(self.dir, "vie.yaml")
        with open(path, "w") as f:
            f.write(text if text is not None else
                    CONFIG.format(workers=workers, flush=flush, log=log or self.log))
        return path

    def serve(self, **kw):
        config = self.write_config(**kw)
        r = run_vie(["check", "-c", config])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        flags = ["-c", config]
        if kw.get("workers"):
            flags = ["--workers", str(kw["workers"])] + flags
        return start_server(self, *flags)

    def check_line(self, line, resp, path, route, status, nbytes):
        """One access log line against the response it describes."""
        doc = json.loads(line)
        self.assertEqual(list(doc.keys()),
                         ["time", "request_id", "trace_id", "span_id", "method", "path", "route",
                          "status", "bytes", "duration_ms", "client", "layers"], line)
        self.assertRegex(doc["time"], TIME)
        self.assertEqual(doc["request_id"], resp.header("X-Request-Id"))
        tp = resp.header("traceparent").split("-")
        self.assertEqual(doc["trace_id"], tp[1])
        self.assertEqual(doc["span_id"], tp[2])
        self.assertEqual(doc["method"], "GET")
        self.assertEqual(doc["path"], path)
        self.assertEqual(doc["route"], route)
        self.assertEqual(doc["status"], status)
        self.assertEqual(doc["bytes"], nbytes)
        self.assertIsInstance(doc["duration_ms"], float)
        self.assertGreaterEqual(doc["duration_ms"], 0.0)
        self.assertLess(doc["duration_ms"], scaled(5000))
        self.assertEqual(doc["client"], "127.0.0.1")
        self.assertEqual([l["name"] for l in doc["layers"]], ["rid", "trace", "log", route])
        for l in doc["layers"]:
            self.assertEqual(sorted(l.keys()), ["name", "us"])
            self.assertIsInstance(l["us"], int)
            self.assertGreaterEqual(l["us"], 0)
        return doc

    # -- request_id ------------------------------------------------------

    def test_request_id_generated_echoed_replaced(self):
        s = self.serve()
        a, b = get(s.port, "/hello"), get(s.port, "/hello")
        self.assertEqual(a.status, 200)
        self.assertRegex(a.header("X-Request-Id"), HEX32)
        self.assertRegex(b.header("X-Request-Id"), HEX32)
        self.assertNotEqual(a.header("X-Request-Id"), b.header("X-Request-Id"))
        r = get(s.port, "/hello", b"X-Request-Id: upstream-7f3a:42\r\n")
        self.assertEqual(r.header("X-Request-Id"), "upstream-7f3a:42")
        for bad in (b"has space", b'quo"te', b"x" * 129, b"caf\xc3\xa9"):
            r = get(s.port, "/hello", b"X-Request-Id: " + bad + b"\r\n")
            self.assertEqual(r.status, 200)
            self.assertRegex(r.header("X-Request-Id"), HEX32, bad)

    # -- trace -----------------------------------------------------------

    def test_traceparent_continued_and_started(self):
        s = self.serve()
        r = get(s.port, "/hello", ("traceparent: 00-%s-%s-01\r\ntracestate: rojo=1\r\n"
                                   % (TID, PID)).encode())
        v, trace, span, flags = r.header("traceparent").split("-")
        self.assertEqual((v, trace, flags), ("00", TID, "01"))
        self.assertRegex(span, HEX16)
        self.assertNotEqual(span, PID)
        # The next hop continues from this request's span.
        r2 = get(s.port, "/hello", ("traceparent: %s\r\n" % r.header("traceparent")).encode())
        v2, trace2, span2, flags2 = r2.header("traceparent").split("-")
        self.assertEqual((trace2, flags2), (TID, "01"))
        self.assertNotEqual(span2, span)
        # Not sampled by the caller: kept.
        r3 = get(s.port, "/hello", ("traceparent: 00-%s-%s-00\r\n" % (TID, PID)).encode())
        self.assertEqual(r3.header("traceparent").split("-")[3], "00")
        # Invalid (uppercase, version ff) or absent: a new trace, sampled.
        for extra in (("traceparent: 00-%s-%s-01\r\n" % (TID.upper(), PID)).encode(),
                      ("traceparent: ff-%s-%s-01\r\n" % (TID, PID)).encode(), b""):
            r4 = get(s.port, "/hello", extra)
            v4, trace4, span4, flags4 = r4.header("traceparent").split("-")
            self.assertEqual(v4, "00")
            self.assertRegex(trace4, HEX32)
            self.assertNotEqual(trace4, TID)
            self.assertEqual(flags4, "01")

    # -- access_log ------------------------------------------------------

    def test_access_log_lines_match_responses(self):
        s = self.serve()
        sent = []
        before = time.time()
        sent.append((get(s.port, "/hello"), "/hello", "GET /hello", 200, 3))
        sent.append((get(s.port, "/items/42", b"X-Request-Id: mine-1\r\n"), "/items/42",
                     "GET /items/:id", 201, 5))
        sent.append((get(s.port, "/hello", ("traceparent: 00-%s-%s-01\r\n" % (TID, PID)).encode()),
                     "/hello", "GET /hello", 200, 3))
        sent.append((get(s.port, "/items/a%22b"), "/items/a%22b", "GET /items/:id", 201, 5))
        lines = wait_lines(self.log, len(sent), scaled(5))
        self.assertEqual(len(lines), len(sent), lines)
        for line, (resp, path, route, status, nbytes) in zip(lines, sent):
            self.assertEqual(resp.status, status, resp)
            doc = self.check_line(line, resp, path, route, status, nbytes)
            t = calendar.timegm(time.strptime(doc["time"][:19], "%Y-%m-%dT%H:%M:%S"))
            self.assertGreaterEqual(t, int(before) - 1)
            self.assertLessEqual(t, time.time() + 1)
        self.assertEqual(json.loads(lines[1])["request_id"], "mine-1")
        self.assertEqual(json.loads(lines[2])["trace_id"], TID)
        # The metrics built-in is not configured here; the counters are
        # checked by the unit tests.

    def test_sigusr1_reopens_after_rotation(self):
        s = self.serve()
        first = [get(s.port, "/items/%d" % i) for i in range(3)]
        self.assertEqual(len(wait_lines(self.log, 3, scaled(5))), 3)
        rotated = self.log + ".1"
        os.rename(self.log, rotated)
        s.signal(signal.SIGUSR1)
        self.assertIsNotNone(s.wait_log(r"access_log log: reopened " + re.escape(self.log),
                                        scaled(5)), s.log())
        later = [get(s.port, "/items/x%d" % i) for i in range(2)]
        new_lines = wait_lines(self.log, 2, scaled(5))
        self.assertEqual(len(new_lines), 2, new_lines)
        old_lines = read_lines(rotated)
        self.assertEqual([json.loads(l)["request_id"] for l in old_lines],
                         [r.header("X-Request-Id") for r in first])
        self.assertEqual([json.loads(l)["request_id"] for l in new_lines],
                         [r.header("X-Request-Id") for r in later])
        self.assertEqual([json.loads(l)["path"] for l in new_lines], ["/items/x0", "/items/x1"])

    def test_sigusr1_reopen_failure_keeps_old_file(self):
        sub = os.path.join(self.dir, "logs")
        os.mkdir(sub)
        log = os.path.join(sub, "access.log")
        s = self.serve(log=log)
        get(s.port, "/hello")
        self.assertEqual(len(wait_lines(log, 1, scaled(5))), 1)
        moved = os.path.join(self.dir, "moved")
        os.rename(sub, moved)  # the path's directory is gone
        s.signal(signal.SIGUSR1)
        self.assertIsNotNone(s.wait_log(r"ERROR.*access_log log: cannot reopen " + re.escape(log)
                                        + r".*still writing to the file open before", scaled(5)),
                             s.log())
        get(s.port, "/hello")
        self.assertEqual(len(wait_lines(os.path.join(moved, "access.log"), 2, scaled(5))), 2)

    def test_workers_buffer_until_stop_and_write_whole_lines(self):
        # flush 1m and 64 KiB buffers: nothing is written before the stop.
        s = self.serve(workers=2, flush="1m")
        n = 100
        ids = []
        for i in range(n):
            r = get(s.port, "/items/%d" % i)
            self.assertEqual(r.status, 201)
            ids.append(r.header("X-Request-Id"))
        self.assertEqual(read_lines(self.log), [])
        s.stop(self)
        lines = read_lines(self.log)
        self.assertEqual(len(lines), n)
        docs = [json.loads(l) for l in lines]  # every line whole
        self.assertEqual(sorted(d["request_id"] for d in docs), sorted(ids))
        self.assertEqual(len(set(ids)), n)  # workers never repeat each other's ids
        self.assertEqual(len(set(d["trace_id"] for d in docs)), n)

    # -- configuration errors --------------------------------------------

    def check_refused(self, text, *patterns):
        config = self.write_config(text=text)
        r = run_vie(["check", "-c", config])
        self.assertEqual(r.returncode, EXIT_CONFIG, r.stdout + r.stderr)
        for p in patterns:
            self.assertRegex(r.stderr, p)

    def test_check_refuses_bad_access_log_settings(self):
        base = CONFIG.format(workers=0, flush="1s", log=self.log)
        missing = os.path.join(self.dir, "no", "such", "access.log")
        self.check_refused(base.replace(self.log, missing),
                           r"vie\.yaml:10:11: .*cannot open \"%s\" for appending: No such file"
                           % re.escape(missing))
        self.check_refused(base.replace("flush: 1s", "flsh: 1s"),
                           r"vie\.yaml:11:\d+: .*unknown key \"flsh\".*did you mean \"flush\"")
        self.check_refused(base.replace("64KiB", "10"), r"vie\.yaml:12:\d+: .*buffer_size")
        self.check_refused(base.replace("flush: 1s", "flush: 2m"), r"vie\.yaml:11:\d+: .*flush")
        self.check_refused(base.replace("type: request_id", "type: request_id\n    header: 'X Id'"),
                           r"vie\.yaml:\d+:\d+: .*header.*X Id")
        self.check_refused(base.replace("type: trace", "type: trace\n    sampled: true"),
                           r"unknown key \"sampled\".*did you mean \"sample\"")
        self.assertFalse(os.path.exists(os.path.dirname(missing)))


if __name__ == "__main__":
    unittest.main()
