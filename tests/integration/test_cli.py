"""The `vie` command line: help, version, usage errors, start-up failures."""

import os
import re
import tempfile
import socket
import subprocess
import time
import unittest

from vietest import (
    VIE_BIN,
    Server,
    VieTestCase,
    assert_no_sanitizer_report,
    get,
    run_vie,
    scaled,
    start_server,
)


class TestCli(VieTestCase):
    def run_ok(self, *args):
        p = run_vie(args)
        assert_no_sanitizer_report(self, p.stderr, "vie " + " ".join(args))
        return p

    def test_help(self):
        for args in (["--help"], ["-h"], ["help"], ["serve", "--help"]):
            with self.subTest(args=args):
                p = self.run_ok(*args)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertIn("serve", p.stdout)
                self.assertIn("Usage", p.stdout)
                self.assertIn("--max-body", p.stdout)

    def test_version(self):
        for flag in ("--version", "-V"):
            with self.subTest(flag=flag):
                p = self.run_ok(flag)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(p.stdout.strip(), "vie 0.1.0")

    def test_unknown_option(self):
        p = self.run_ok("--bogus")
        self.assertEqual(p.returncode, 2)
        self.assertIn("--bogus", p.stderr)
        self.assertIn("Usage", p.stderr)
        self.assertEqual(p.stdout, "")

    def test_no_command(self):
        p = self.run_ok()
        self.assertEqual(p.returncode, 2)
        self.assertIn("Usage", p.stderr)

    def test_unknown_command(self):
        p = self.run_ok("frobnicate")
        self.assertEqual(p.returncode, 2)
        self.assertIn("frobnicate", p.stderr)
        self.assertIn("Usage", p.stderr)

    def test_serve_unknown_option(self):
        p = self.run_ok("serve", "--bogus")
        self.assertEqual(p.returncode, 2)
        self.assertIn("--bogus", p.stderr)
        self.assertIn("Usage", p.stderr)

    def test_serve_missing_value(self):
        p = self.run_ok("serve", "--max-body")
        self.assertEqual(p.returncode, 2)
        self.assertIn("Usage", p.stderr)

    def test_serve_extra_argument(self):
        p = self.run_ok("serve", "extra")
        self.assertEqual(p.returncode, 2)
        self.assertIn("extra", p.stderr)

    def test_serve_bad_numbers(self):
        for args in (
            ["--max-body", "abc"],
            ["--max-body", "-1"],
            ["--max-body", "+5"],
            ["--max-body", "0"],
            ["--max-body", "12k"],
            ["--max-body", ""],
            ["--max-connections", "0"],
            ["--max-headers", "99999999999999999999999"],
            ["--max-request-line", "10"],
            ["--keepalive-timeout", "1.5"],
            ["--log-level", "loud"],
        ):
            with self.subTest(args=args):
                p = self.run_ok("serve", *args)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn(args[0], p.stderr)
                self.assertIn("Usage", p.stderr)

    def test_listen_nonsense(self):
        p = self.run_ok("serve", "--listen", "nonsense")
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("nonsense", p.stderr)
        self.assertRegex(p.stderr, r"(?i)error.*listen")

    def test_listen_bad_forms(self):
        for spec in ("127.0.0.1", "127.0.0.1:99999", "127.0.0.1:-1", "999.1.1.1:80", ":80", "127.0.0.1:8o"):
            with self.subTest(spec=spec):
                p = self.run_ok("serve", "--listen", spec)
                self.assertEqual(p.returncode, 1, p.stderr)
                self.assertIn("listen", p.stderr)

    def test_address_in_use(self):
        first = start_server(self)
        p = self.run_ok("serve", "--listen", "127.0.0.1:%d" % first.port)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertRegex(p.stderr, r"(?i)address already in use")
        self.assertIn(str(first.port), p.stderr)
        # the first one is unharmed
        self.assertEqual(get(first.port, "/").status, 200)

    def test_fixed_port(self):
        # find a free port, then ask for it explicitly
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        srv = start_server(self, listen="127.0.0.1:%d" % port)
        self.assertEqual(srv.port, port)
        self.assertEqual(get(port, "/").status, 200)

    def test_ipv6_listen(self):
        try:
            s = socket.socket(socket.AF_INET6)
            s.bind(("::1", 0))
            s.close()
        except OSError:
            self.skipTest("no IPv6 loopback")
        # The port line is "listening on http://[::1]:PORT": start by hand.
        p = subprocess.Popen([VIE_BIN, "serve", "--listen", "[::1]:0"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.addCleanup(lambda: (p.poll() is None and p.kill(), p.wait(5)))
        line = p.stderr.readline().decode()
        m = re.search(r"listening on http://\[::1\]:(\d+)", line)
        self.assertIsNotNone(m, line)
        port = int(m.group(1))
        c = socket.create_connection(("::1", port), timeout=5)
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            d = c.recv(4096)
            if not d:
                break
            data += d
        c.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data)
        p.terminate()
        self.assertEqual(p.wait(scaled(10)), 0)
        rest = p.stderr.read().decode()
        p.stderr.close()
        assert_no_sanitizer_report(self, rest)

    def test_log_level_warn_hides_info(self):
        # The port line is INFO: with warn it is not printed, so the
        # helper cannot learn the port; check the process starts and stops.
        p = subprocess.Popen([VIE_BIN, "serve", "--listen", "127.0.0.1:0", "--log-level", "warn"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.addCleanup(lambda: (p.poll() is None and p.kill(), p.wait(5)))
        time.sleep(0.3 * scaled(1))
        self.assertIsNone(p.poll(), "exited early")
        p.terminate()
        self.assertEqual(p.wait(scaled(10)), 0)
        err = p.stderr.read().decode()
        p.stderr.close()
        self.assertNotIn("listening on", err)
        self.assertNotIn("INFO", err)
        assert_no_sanitizer_report(self, err)


if __name__ == "__main__":
    unittest.main()


class TestDebugFlag(VieTestCase):
    def test_debug_serves_and_prints_the_pipeline(self):
        srv = start_server(self, "--debug")
        r = get(srv.port, "/debug/pipeline")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Type"), "application/json")
        doc = r.json()
        routes = {x["route"] for x in doc["routes"]}
        self.assertTrue({"GET /", "GET /healthz", "POST /echo", "GET /debug/pipeline"} <= routes,
                        routes)
        self.assertIn("requests", doc["counters"])
        # printed at start, before the port line
        self.assertIn("debug: the pipeline of every route follows", srv.log())

    def test_debug_endpoints_are_off_unless_asked_for(self):
        # The embedded default turns them on (it is a demo); a config of
        # one's own has them off unless it says debug_endpoints: true.
        self.assertEqual(get(start_server(self).port, "/debug/pipeline").status, 200)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write("routes:\n  - {path: /, respond: {body: hi}}\n")
        self.addCleanup(os.unlink, f.name)
        srv = start_server(self, "-c", f.name)
        self.assertEqual(get(srv.port, "/debug/pipeline").status, 404)
