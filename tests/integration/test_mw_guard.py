"""The guard and header built-ins (auth, cors, body_limit,
security_headers, timeout) configured in YAML and served by the real
binary: `vie check -c` accepts the config, `vie serve -c` answers as the
layers say. The timeout is driven by the fault built-in's fixed delay (a
parked request, as an upstream that does not answer)."""

import os
import shutil
import subprocess
import tempfile
import textwrap
import time
import unittest

from vietest import VIE_BIN, VieTestCase, exchange, get, run_vie, scaled, start_server

EXIT_CONFIG = 3
TOKENS_ENV = "erin:env-tok-erin,frank:env-tok-frank"

CONFIG = """\
server:
  workers: 0
middleware:
  - name: metrics
    type: metrics
  - name: auth
    type: auth
    tokens_env: VIE_GUARD_TOKENS
    tokens_file: tokens.txt
    realm: guard-test
  - name: cors
    type: cors
    allow_origins: ["https://app.example"]
    allow_methods: [GET, PUT]
    allow_headers: [X-Custom, Content-Type]
    expose_headers: [X-Total]
    max_age: 10m
  - name: limit
    type: body_limit
    max_bytes: 1KiB
  - name: sec
    type: security_headers
    hsts_max_age: 365d
    content_security_policy: "default-src 'self'"
  - name: timeout
    type: timeout
    timeout: 200ms
  - name: slow
    type: fault
    phase: app
    enabled: true
    delay: {percent: 100, kind: fixed, ms: 5s}
pipeline: [metrics]
groups:
  - name: api
    prefix: /api
    middleware: [auth]
  - name: web
    prefix: /web
    middleware: [cors, sec]
routes:
  - {path: /who, group: api, requires: [auth], respond: {body: "secret\\n"}}
  - {path: /data, group: web, respond: {body: "data\\n"}}
  - {method: PUT, path: /data, group: web, respond: {body: "put\\n"}}
  - {method: POST, path: /upload, middleware: [limit], respond: {body: "stored\\n"}}
  - {path: /slow, middleware: [timeout, slow], respond: {body: "too late\\n"}}
  - {path: /fast, respond: {body: "fast\\n"}}
"""


class GuardTest(VieTestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="vie-guard-")
        with open(os.path.join(cls.dir, "tokens.txt"), "w") as f:
            f.write("# principal:token\n\ncarol:file-tok-carol\n")
        os.chmod(os.path.join(cls.dir, "tokens.txt"), 0o600)
        cls.config = os.path.join(cls.dir, "vie.yaml")
        with open(cls.config, "w") as f:
            f.write(CONFIG)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def env(self):
        return {"VIE_GUARD_TOKENS": TOKENS_ENV}

    def setUp(self):
        # Run from elsewhere: tokens.txt is found next to the config.
        r = subprocess.run([VIE_BIN, "check", "-c", self.config], capture_output=True, text=True,
                           env=dict(os.environ, **self.env()), cwd="/", timeout=scaled(10),
                           stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.server = start_server(self, "-c", self.config, env=self.env())
        self.port = self.server.port

    def send(self, raw, method="GET"):
        r, c = exchange(self.port, raw.encode("latin-1"), method=method)
        c.close()
        return r

    # -- auth ------------------------------------------------------------

    def test_auth_tokens_from_env_and_file(self):
        for token in ("env-tok-erin", "env-tok-frank", "file-tok-carol"):
            r = get(self.port, "/api/who", b"Authorization: Bearer " + token.encode() + b"\r\n")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, b"secret\n")

    def test_auth_missing_and_wrong(self):
        r = get(self.port, "/api/who")
        self.assert_problem(r, 401)
        self.assertEqual(r.header("WWW-Authenticate"), 'Bearer realm="guard-test"')
        r = get(self.port, "/api/who", b"Authorization: Bearer env-tok-erin-not\r\n")
        self.assert_problem(r, 401)
        self.assertEqual(r.header("WWW-Authenticate"),
                         'Bearer realm="guard-test", error="invalid_token"')
        r = get(self.port, "/api/who", b"Authorization: Basic ZXJpbjpwdw==\r\n")
        self.assert_problem(r, 401)
        self.assertEqual(r.header("WWW-Authenticate"), 'Bearer realm="guard-test"')
        # Other routes are not guarded.
        self.assertEqual(get(self.port, "/fast").status, 200)

    def test_auth_decisions_in_metrics_and_no_token_in_the_log(self):
        get(self.port, "/api/who", b"Authorization: Bearer file-tok-carol\r\n")
        get(self.port, "/api/who")
        get(self.port, "/api/who", b"Authorization: Bearer sneaky-guess-123\r\n")
        get(self.port, "/api/who", b"Authorization: Bearer sneaky-guess-456\r\n")
        body = get(self.port, "/metrics").body.decode()
        for result, n in (("allowed", 1), ("missing", 1), ("invalid", 2)):
            line = 'vie_auth_decisions_total{layer="auth",result="%s"} %d' % (result, n)
            self.assertIn(line + "\n", body)
        self.server.stop(self)
        log = self.server.log()
        for secret in ("file-tok-carol", "env-tok", "sneaky-guess"):
            self.assertNotIn(secret, log)

    # -- cors ------------------------------------------------------------

    def test_cors_preflight_on_a_get_route(self):
        r = self.send("OPTIONS /web/data HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n"
                      "Access-Control-Request-Method: PUT\r\n"
                      "Access-Control-Request-Headers: x-custom\r\n\r\n", "OPTIONS")
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.header("Access-Control-Allow-Origin"), "https://app.example")
        self.assertEqual(r.header("Access-Control-Allow-Methods"), "GET, PUT")
        self.assertEqual(r.header("Access-Control-Allow-Headers"), "X-Custom, Content-Type")
        self.assertEqual(r.header("Access-Control-Max-Age"), "600")
        self.assertIn("Origin", r.header("Vary"))
        self.assertIsNone(r.header("Allow"))
        # A refused preflight: 403 naming what was refused, no CORS header.
        r = self.send("OPTIONS /web/data HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n"
                      "Access-Control-Request-Method: PUT\r\n\r\n", "OPTIONS")
        doc = self.assert_problem(r, 403)
        self.assertEqual(doc["detail"],
                         'CORS preflight refused: origin "https://evil.example" is not allowed')
        self.assertIsNone(r.header("Access-Control-Allow-Origin"))
        r = self.send("OPTIONS /web/data HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n"
                      "Access-Control-Request-Method: DELETE\r\n\r\n", "OPTIONS")
        doc = self.assert_problem(r, 403)
        self.assertEqual(doc["detail"], 'CORS preflight refused: method "DELETE" is not allowed')

    def test_cors_actual_requests(self):
        r = get(self.port, "/web/data", b"Origin: https://app.example\r\n")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"data\n")
        self.assertEqual(r.header("Access-Control-Allow-Origin"), "https://app.example")
        self.assertEqual(r.header("Access-Control-Expose-Headers"), "X-Total")
        self.assertEqual(r.header("Vary"), "Origin")
        r = get(self.port, "/web/data", b"Origin: https://evil.example\r\n")
        self.assertEqual(r.status, 200)
        self.assertEqual([k for k, _ in r.headers if k.lower().startswith("access-control-")], [])

    # -- security_headers ------------------------------------------------

    def test_security_headers_present(self):
        r = get(self.port, "/web/data")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Strict-Transport-Security"), "max-age=31536000")
        self.assertEqual(r.header("X-Frame-Options"), "DENY")
        self.assertEqual(r.header("X-Content-Type-Options"), "nosniff")
        self.assertEqual(r.header("Referrer-Policy"), "no-referrer")
        self.assertEqual(r.header("Content-Security-Policy"), "default-src 'self'")
        # Only on the routes of its group.
        self.assertIsNone(get(self.port, "/fast").header("X-Frame-Options"))

    # -- body_limit ------------------------------------------------------

    def curl_post(self, size):
        r = subprocess.run(
            ["curl", "-sS", "--max-time", str(scaled(10)), "-o", "-", "-w", "\n%{http_code}",
             "-H", "Content-Type: application/octet-stream", "--data-binary", "@-",
             "http://127.0.0.1:%d/upload" % self.port],
            input=b"x" * size, capture_output=True, timeout=scaled(15))
        self.assertEqual(r.returncode, 0, r.stderr)
        body, _, code = r.stdout.rpartition(b"\n")
        return int(code), body

    def test_body_limit_413_with_curl(self):
        code, body = self.curl_post(1024)
        self.assertEqual((code, body), (200, b"stored\n"))
        code, body = self.curl_post(1025)
        self.assertEqual(code, 413)
        self.assertIn(b'"detail":"the request body is 1025 bytes; this route accepts at most 1024"',
                      body)
        # A big one (above curl's Expect: 100-continue threshold) too.
        code, body = self.curl_post(200000)
        self.assertEqual(code, 413)
        self.assertIn(b"the request body is 200000 bytes", body)

    # -- timeout ---------------------------------------------------------

    def test_timeout_504_while_a_later_layer_waits(self):
        t0 = time.monotonic()
        r = get(self.port, "/slow", timeout=scaled(5))
        took = time.monotonic() - t0
        doc = self.assert_problem(r, 504)
        self.assertEqual(doc["detail"], "the request deadline passed")
        self.assertGreaterEqual(took, 0.15)
        self.assertLess(took, scaled(2.0))
        self.assertTrue(self.server.wait_log(r"request deadline exceeded while slow was pending",
                                             scaled(2)), self.server.log())
        # The server goes on answering.
        self.assertEqual(get(self.port, "/fast").status, 200)


class GuardConfigErrorsTest(unittest.TestCase):
    """A refused credential source reaches `vie check` with the YAML
    position and the tokens file's own line, never the token."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="vie-guard-err-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def check(self, text, env=None):
        path = os.path.join(self.dir, "vie.yaml")
        self.text = textwrap.dedent(text)
        with open(path, "w") as f:
            f.write(self.text)
        r = subprocess.run([VIE_BIN, "check", "-c", path], capture_output=True, text=True,
                           env=dict(os.environ, **(env or {})), timeout=scaled(10),
                           stdin=subprocess.DEVNULL)
        return path, r

    def at(self, path, line, value):
        """"FILE:LINE:COL" of value, which starts on line (1-based) of the config."""
        return "%s:%d:%d" % (path, line, self.text.splitlines()[line - 1].index(value) + 1)

    def test_tokens_file_line_without_colon(self):
        tokens = os.path.join(self.dir, "tokens.txt")
        with open(tokens, "w") as f:
            f.write("carol:hidden-tok\n# ok\nno-colon-hidden\n")
        os.chmod(tokens, 0o600)
        path, r = self.check("""\
            middleware:
              - {name: auth, type: auth, tokens_file: tokens.txt}
            pipeline: [auth]
            routes:
              - {path: /x, respond: {body: x}}
            """)
        self.assertEqual(r.returncode, EXIT_CONFIG, r.stdout + r.stderr)
        want = ('%s: middleware "auth": key "tokens_file": %s:3: expected '
                '"principal:token", found no \':\'' % (self.at(path, 2, "tokens.txt"), tokens))
        self.assertIn(want, r.stderr)
        self.assertNotIn("hidden", r.stderr + r.stdout)

    def test_tokens_env_unset_and_credentials_with_star(self):
        path, r = self.check("""\
            middleware:
              - {name: auth, type: auth, tokens_env: VIE_GUARD_SURELY_UNSET}
              - {name: cors, type: cors, allow_origins: "*", allow_credentials: true}
            pipeline: [auth, cors]
            routes:
              - {path: /x, respond: {body: x}}
            """)
        self.assertEqual(r.returncode, EXIT_CONFIG, r.stdout + r.stderr)
        self.assertIn('%s: middleware "auth": key "tokens_env": tokens_env: the variable '
                      'VIE_GUARD_SURELY_UNSET is not set' % self.at(path, 2, "VIE_GUARD_SURELY"),
                      r.stderr)
        self.assertIn('%s: middleware "cors": key "allow_credentials": allow_credentials '
                      'with allow_origins "*" is refused' % self.at(path, 3, "true}"), r.stderr)

    def test_ranges(self):
        path, r = self.check("""\
            middleware:
              - {name: t, type: timeout, timeout: 2h}
              - {name: b, type: body_limit, max_bytes: 0}
              - {name: s, type: security_headers, frame_options: ALLOWALL}
            pipeline: [t, b, s]
            routes:
              - {path: /x, respond: {body: x}}
            """)
        self.assertEqual(r.returncode, EXIT_CONFIG, r.stdout + r.stderr)
        self.assertIn('%s: middleware "t" (type timeout): key "timeout": expected a duration '
                      'from 1ms to 1h, got "2h"' % self.at(path, 2, "2h"), r.stderr)
        self.assertIn('%s: middleware "b" (type body_limit): key "max_bytes": expected a size '
                      'from 1 to 1024GiB, got "0"' % self.at(path, 3, "0}"), r.stderr)
        self.assertIn('%s: middleware "s" (type security_headers): key "frame_options": '
                      'frame_options "ALLOWALL" is neither DENY nor SAMEORIGIN'
                      % self.at(path, 4, "ALLOWALL"), r.stderr)


if __name__ == "__main__":
    unittest.main()
