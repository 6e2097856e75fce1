"""/debug/requests across workers, and the watchdog for stuck requests."""
import json
import os
import tempfile
import socket
import threading
import time
import unittest

from vietest import VieTestCase, get, scaled, start_server


class TestInflight(VieTestCase):
    def _sleepers(self, port, n, ms):
        results = []

        def one():
            results.append(get(port, "/chaos/sleep?ms=%d" % ms, timeout=scaled(10)).status)

        threads = [threading.Thread(target=one) for _ in range(n)]
        for t in threads:
            t.start()
        return threads, results

    def test_debug_requests_lists_every_workers_requests(self):
        srv = start_server(self, "--workers", "2", "--chaos", "--debug")
        threads, results = self._sleepers(srv.port, 4, 1200)
        # wait until all four are in flight (bounded)
        deadline = time.monotonic() + scaled(3)
        sleeping = []
        while time.monotonic() < deadline:
            doc = get(srv.port, "/debug/requests").json()
            sleeping = [r for r in doc["requests"] if r["route"] == "GET /chaos/sleep"]
            if len(sleeping) == 4:
                break
            time.sleep(0.05)
        self.assertEqual(len(sleeping), 4, sleeping)
        # every worker sees every worker's requests: ask over several fresh
        # connections (the workers take turns accepting) and check the pids
        kids = set(int(x) for x in open("/proc/%d/task/%d/children" % (srv.pid, srv.pid)).read().split())
        answered_by = set()
        for _ in range(8):
            doc = get(srv.port, "/debug/requests").json()
            rows = [r for r in doc["requests"] if r["route"] == "GET /chaos/sleep"]
            self.assertEqual(len(rows), 4, rows)
            self.assertTrue({r["worker_pid"] for r in rows} <= kids, (rows, kids))
            answered_by |= {r["worker_pid"] for r in doc["requests"] if r["route"] == "GET /debug/requests"}
        self.assertTrue(answered_by <= kids)
        for r in sleeping:
            self.assertEqual(r["layer"], "handler")
            self.assertEqual(r["method"], "GET")
            self.assertEqual(r["path"], "/chaos/sleep")
            self.assertGreaterEqual(r["total_ms"], r["in_layer_ms"])
        for t in threads:
            t.join(scaled(10))
        self.assertEqual(results, [200] * 4)
        # done: no longer listed
        doc = get(srv.port, "/debug/requests").json()
        self.assertEqual([r for r in doc["requests"] if r["route"] == "GET /chaos/sleep"], [])

    def test_watchdog_logs_a_stuck_request_once(self):
        srv = start_server(self, "--workers", "0", "--chaos", "--watchdog", "300")
        threads, results = self._sleepers(srv.port, 1, 2500)
        self.assertTrue(srv.wait_log(r"watchdog: GET /chaos/sleep \(route GET /chaos/sleep\) "
                                     r"has been in handler for \d+ ms; trail: .*\(pending\)",
                                     scaled(3)), srv.log())
        for t in threads:
            t.join(scaled(10))
        self.assertEqual(results, [200])
        self.assertEqual(srv.log().count("watchdog:"), 1)

    def test_debug_requests_is_off_without_debug(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write("routes:\n  - {path: /, respond: {body: hi}}\n")
        self.addCleanup(os.unlink, f.name)
        srv = start_server(self, "-c", f.name)
        self.assertEqual(get(srv.port, "/debug/requests").status, 404)


if __name__ == "__main__":
    unittest.main()


class TestBlocking(VieTestCase):
    def test_a_blocking_route_does_not_block_the_loop(self):
        srv = start_server(self, "--workers", "0", "--chaos")
        out = []
        t = threading.Thread(target=lambda: out.append(
            (get(srv.port, "/chaos/block?ms=800", timeout=scaled(10)), time.monotonic())))
        t0 = time.monotonic()
        t.start()
        time.sleep(0.1)
        for _ in range(50):
            self.assertEqual(get(srv.port, "/").status, 200)
        fast_done = time.monotonic()
        t.join(scaled(10))
        r, blocked_done = out[0]
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"blocked 800")
        # the 50 requests finished while the handler was still blocked
        self.assertLess(fast_done, blocked_done)
        self.assertGreaterEqual(blocked_done - t0, 0.8)

    def test_a_client_that_leaves_during_a_blocking_handler(self):
        srv = start_server(self, "--workers", "0", "--chaos")
        c = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        c.sendall(b"GET /chaos/block?ms=400 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)
        c.close()
        time.sleep(0.6)  # the thread finishes after its client left
        self.assertEqual(get(srv.port, "/").status, 200)
        self.assertEqual(get(srv.port, "/chaos/block?ms=10").status, 200)
