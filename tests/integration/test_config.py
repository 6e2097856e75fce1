"""The YAML config through the real binary: `vie check`, `vie pipeline`,
`vie config explain`, overlays, ${VAR} substitution, serving a config,
reloading it on SIGHUP, and broken configs refused with FILE:LINE:COL and
a message that says what was expected."""

import json
import os
import re
import shutil
import signal
import tempfile
import textwrap
import time
import unittest
import urllib.request

from vietest import VIE_BIN, get, run_vie, scaled, start_server

EXIT_CONFIG = 3

GOOD = """\
server:
  listen: 127.0.0.1:0
  workers: 0
  timeouts: {request: 5s}
middleware:
  - name: rid
    type: request_id
  - name: sec
    type: security_headers
pipeline: [rid]
groups:
  - name: api
    prefix: /api
    middleware: [sec]
routes:
  - path: /hello
    respond: {body: "hello ${WHO:-world}\\n"}
  - path: /things/:id
    group: api
    requires: [sec]
    respond:
      status: 201
      body: '{"ok":true}'
      content_type: application/json
      headers: {X-Extra: yes-indeed}
"""

# (name, yaml, env, (line, col or None), [substrings of the message])
BROKEN = [
    ("unknown top-level key", "rotes: []\n", {}, (1, 1), ['unknown key "rotes"', 'did you mean "routes"']),
    ("unknown server key", "server:\n  listn: 127.0.0.1:0\n", {}, (2, 3),
     ['unknown key "listn"', 'did you mean "listen"']),
    ("listen is a map", "server:\n  listen: {host: x}\n", {}, (2, 11), ["listen", "expected a string"]),
    ("workers out of range", "server:\n  workers: 999\n", {}, (2, 12), ["workers", "256"]),
    ("workers not a number", "server:\n  workers: many\n", {}, (2, 12), ["workers", "many"]),
    ("bad duration", "server:\n  timeouts: {request: 5 parsecs}\n", {}, (2, 23), ["request", "duration"]),
    ("bad size", "server:\n  limits:\n    max_body: 10XB\n", {}, (3, 15), ["max_body", "10XB"]),
    ("bad enum", "server:\n  on_crash: restart\n", {}, (2, 13), ["on_crash", "recover", "exit"]),
    ("unknown middleware type",
     "middleware:\n  - type: rate_limt\npipeline: [rate_limt]\n", {}, (2, 11),
     ['"rate_limt"', 'did you mean "rate_limit"']),
    ("middleware without type", "middleware:\n  - name: x\npipeline: [x]\n", {}, (2, 5), ['"type"']),
    ("duplicate instance name",
     "middleware:\n  - {name: a, type: request_id}\n  - {name: a, type: trace}\npipeline: [a]\n",
     {}, (3, 12), ['"a" is already taken', "2:5"]),
    ("unknown instance in pipeline",
     "middleware:\n  - {name: request_id, type: request_id}\npipeline: [requestid]\n", {},
     (3, 12), ['"requestid"', 'did you mean "request_id"']),
    ("declared but unused", "middleware:\n  - {name: rid, type: request_id}\n", {}, (2, 5),
     ['"rid" is declared but used nowhere']),
    ("instance used twice",
     "middleware:\n  - {name: rid, type: request_id}\npipeline: [rid]\n"
     "groups:\n  - {name: g, prefix: /g, middleware: [rid]}\n", {}, (5, 40),
     ['"rid" is already used in pipeline', "3:12"]),
    ("route requires unknown layer",
     "routes:\n  - path: /x\n    requires: [auht]\n    respond: {body: x}\n", {}, (3, 15),
     ['no middleware is called "auht"']),
    ("route without action", "routes:\n  - path: /x\n", {}, (2, 5), ["exactly one action"]),
    ("route with two actions",
     "routes:\n  - path: /x/*path\n    respond: {body: x}\n    static: {root: /tmp}\n", {}, (2, 5),
     ["exactly one action"]),
    ("status out of range", "routes:\n  - path: /x\n    respond: {status: 700}\n", {}, (3, 23),
     ["status", "599"]),
    ("header set by vie",
     "routes:\n  - path: /x\n    respond: {body: x, headers: {Content-Length: 5}}\n", {}, (3, 34),
     ["Content-Length", "set by Vie"]),
    ("unknown group",
     "groups:\n  - {name: api, prefix: /api}\nroutes:\n  - {path: /x, group: apj, respond: {body: x}}\n",
     {}, (4, 23), ['no group is called "apj"', 'did you mean "api"']),
    ("bad group prefix", "groups:\n  - {name: api, prefix: api/}\n", {}, (2, 25), ["prefix", '"api/"']),
    ("yaml syntax error", "routes: [\n  - path: /x\n", {}, (2, 3), ["invalid YAML"]),
    ("unset variable", "server:\n  listen: ${VIE_TEST_SURELY_UNSET}\n", {}, (2, 11),
     ["VIE_TEST_SURELY_UNSET"]),
    ("static without catch-all",
     "routes:\n  - path: /files\n    static: {root: /tmp}\n", {}, (2, 11), ["catch-all", "/files"]),
    ("proxy not yet", "routes:\n  - path: /x\n    proxy: {upstream: x}\n", {}, (3, 12), ["proxy", "not supported yet"]),
    ("lowercase method", "routes:\n  - {method: get, path: /x, respond: {body: x}}\n", {}, (2, 14),
     ["HTTP method", '"get"']),
    ("duplicate key", "server:\n  workers: 1\n  workers: 2\n", {}, (3, 3), ["workers"]),
    ("bad phase",
     "middleware:\n  - {name: rid, type: request_id, phase: middle}\npipeline: [rid]\n", {}, (2, 42),
     ["phase", "observe", "guard", "app"]),
    ("metrics in a group",
     "middleware:\n  - {type: metrics}\ngroups:\n  - {name: g, prefix: /g, middleware: [metrics]}\n",
     {}, (4, 40), ["not a layer", "pipeline"]),
    ("unknown route key",
     "routes:\n  - path: /x\n    respnd: {body: x}\n", {}, (3, 5), ['unknown key "respnd"', 'did you mean "respond"']),
    ("top level not a map", "- a\n- b\n", {}, (1, 1), ["map"]),
    ("listen malformed", "server:\n  listen: not an address\n", {}, (2, 11), ["listen", "HOST:PORT"]),
    ("listen port out of range", "server:\n  listen: 127.0.0.1:99999\n", {}, (2, 11), ["HOST:PORT"]),
    ("interim status as a final answer", "routes:\n  - path: /x\n    respond: {status: 100}\n", {},
     (3, 23), ["status", "200 to 599"]),
    ("empty methods", "routes:\n  - {methods: [], path: /x, respond: {body: x}}\n", {}, (2, 15),
     ["at least one method"]),
    ("no routes at all", "server:\n  workers: 0\n", {}, (1, 1), ["no routes"]),
    ("body on a 204", "routes:\n  - path: /x\n    respond: {status: 204, body: x}\n", {}, (3, 34),
     ["204", "no body"]),
]


class ConfigTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="vie-config-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def run_env(self, args, env):
        import subprocess

        e = dict(os.environ)
        e.update(env)
        return subprocess.run([VIE_BIN] + args, capture_output=True, text=True, env=e,
                              timeout=scaled(10), stdin=subprocess.DEVNULL)

    # -- broken configs --------------------------------------------------

    def test_broken_configs_are_refused_with_position(self):
        self.assertGreaterEqual(len(BROKEN), 20)
        for name, text, env, (line, col), needles in BROKEN:
            with self.subTest(name):
                path = self.write("broken.yaml", text)
                r = self.run_env(["check", "-c", path], env)
                self.assertEqual(r.returncode, EXIT_CONFIG, "%s: %s%s" % (name, r.stdout, r.stderr))
                if line is None:
                    pat = re.escape(path) + r":(\d+):(\d+): "
                else:
                    pat = re.escape(path) + r":%d:%s: " % (line, col if col else r"\d+")
                m = [l for l in r.stderr.splitlines() if re.match(pat, l)]
                self.assertTrue(m, "%s: no line matching %r in:\n%s" % (name, pat, r.stderr))
                for needle in needles:
                    self.assertTrue(any(needle in l for l in m),
                                    "%s: %r not in %r" % (name, needle, m))
                self.assertIn("nothing was started", r.stderr)

    def test_cycle_is_refused_naming_the_layers(self):
        path = self.write("cycle.yaml", textwrap.dedent("""\
            middleware:
              - {name: a, type: request_id, runs_before: [b]}
              - {name: b, type: trace, runs_before: [a]}
            pipeline: [a, b]
            routes:
              - {path: /x, respond: {body: x}}
            """))
        r = run_vie(["check", "-c", path])
        self.assertEqual(r.returncode, EXIT_CONFIG, r.stderr)
        self.assertRegex(r.stderr, r"cycle")
        self.assertIn("pipeline is invalid", r.stderr)

    def test_names_only_known_at_freeze_are_checked(self):
        # A layer that is not a rate_limit as a tighten target, and a
        # fault route that matches nothing: refused, each named.
        path = self.write("freeze.yaml", textwrap.dedent("""\
            middleware:
              - {name: rid, type: request_id}
              - type: slo
                objectives: [{name: a, availability: 99}]
                actions: {tighten: [{rate_limit: rid, factor: 0.5}]}
              - {type: fault, enabled: true, routes: ["GET /nope"], abort: {percent: 1}}
            pipeline: [rid, slo, fault]
            routes:
              - {path: /x, respond: {body: x}}
            """))
        r = run_vie(["check", "-c", path])
        self.assertEqual(r.returncode, EXIT_CONFIG, r.stderr)
        self.assertIn('tighten: layer "rid" is not a rate_limit', r.stderr)
        self.assertIn('routes entry "GET /nope" matches no route', r.stderr)
        self.assertIn("pipeline is invalid", r.stderr)

    def test_route_conflict_is_refused(self):
        path = self.write("conflict.yaml", "routes:\n  - {path: /x, respond: {body: a}}\n"
                          "  - {path: /x, respond: {body: b}}\n")
        r = run_vie(["check", "-c", path])
        self.assertEqual(r.returncode, EXIT_CONFIG, r.stderr)
        self.assertRegex(r.stderr, re.escape(path) + r":3:\d+: .*GET /x refused")

    def test_config_option_spellings(self):
        # -cFILE and an abbreviated --conf are what getopt accepts: they
        # must not fall back to the embedded default.
        path = self.write("vie.yaml", GOOD)
        for args in (["-c" + path], ["--conf", path], ["--config=" + path]):
            r = run_vie(["pipeline"] + args)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("GET /api/things/:id", r.stdout, args)
        r = run_vie(["pipeline", "--env", "prod"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("--env needs a config", r.stderr)

    def test_missing_file(self):
        r = run_vie(["check", "-c", os.path.join(self.dir, "nope.yaml")])
        self.assertEqual(r.returncode, EXIT_CONFIG)
        self.assertIn("nope.yaml", r.stderr)

    # -- check, pipeline, explain ----------------------------------------

    def test_check_prints_every_pipeline(self):
        path = self.write("vie.yaml", GOOD)
        r = run_vie(["check", "-c", path])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("valid", r.stdout)
        self.assertIn("GET /hello", r.stdout)
        self.assertIn("GET /api/things/:id", r.stdout)
        # the api route has both layers, rid first (phase observe, registered first)
        block = r.stdout[r.stdout.index("GET /api/things/:id"):]
        self.assertLess(block.index("rid"), block.index("sec"))

    def test_pipeline_formats(self):
        path = self.write("vie.yaml", GOOD)
        r = run_vie(["pipeline", "-c", path, "--format", "json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        doc = json.loads(r.stdout)
        text = json.dumps(doc)
        self.assertIn("/api/things/:id", text)
        r = run_vie(["pipeline", "-c", path, "--format", "mermaid"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith("flowchart"), r.stdout[:80])
        r = run_vie(["pipeline", "-c", path, "--format", "svg"])
        self.assertEqual(r.returncode, 2)

    def test_gateway_example_is_valid(self):
        example = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples",
                               "gateway.yaml")
        r = run_vie(["check", "-c", example])
        self.assertEqual(r.returncode, 0, r.stderr)
        block = r.stdout[r.stdout.index("POST /api/orders"):]
        order = [block.index(n) for n in ("log", "tracing", "ratelimit", "auth", "validation")]
        self.assertEqual(order, sorted(order), block)

    def test_overlay_and_explain(self):
        base = self.write("vie.yaml", GOOD)
        self.write("vie.prod.yaml", "server:\n  timeouts:\n    request: 2s\n")
        r = run_vie(["config", "explain", "server.timeouts.request", "-c", base, "--env", "prod"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"server\.timeouts\.request = 2s +# .*vie\.prod\.yaml:3:\d+")
        # without the env the base file's value and line
        r = run_vie(["config", "explain", "server.timeouts.request", "-c", base])
        self.assertRegex(r.stdout, r"= 5s +# .*vie\.yaml:4:\d+")
        # a map shows every leaf, each with the file that set it
        r = run_vie(["config", "explain", "server", "-c", base, "--env", "prod"])
        self.assertRegex(r.stdout, r"server\.listen = 127\.0\.0\.1:0 +# .*vie\.yaml:2:\d+")
        self.assertRegex(r.stdout, r"server\.timeouts\.request = 2s +# .*vie\.prod\.yaml")
        # VIE_ENV selects the overlay too
        r = self.run_env(["config", "explain", "server.timeouts.request", "-c", base],
                         {"VIE_ENV": "prod"})
        self.assertIn("= 2s", r.stdout)
        # a missing overlay is an error
        r = run_vie(["check", "-c", base, "--env", "staging"])
        self.assertEqual(r.returncode, EXIT_CONFIG)
        self.assertIn("vie.staging.yaml", r.stderr)
        # an absent key
        r = run_vie(["config", "explain", "server.backlog", "-c", base])
        self.assertEqual(r.returncode, 1)
        self.assertIn("not set", r.stderr)
        # a route by its path, a middleware by its name
        r = run_vie(["config", "explain", "middleware.rid.type", "-c", base])
        self.assertRegex(r.stdout, r"= request_id +# .*vie\.yaml:7:\d+")

    def test_config_default_is_valid(self):
        r = run_vie(["config", "default"])
        self.assertEqual(r.returncode, 0)
        path = self.write("default.yaml", r.stdout)
        r = run_vie(["check", "-c", path])
        self.assertEqual(r.returncode, 0, r.stderr)

    # -- serving ------------------------------------------------------------

    def test_serve_a_config_with_env_substitution(self):
        path = self.write("vie.yaml", GOOD)
        s = start_server(self, "-c", path, env=dict(os.environ, WHO="vie"))
        r = get(s.port, "/hello")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"hello vie\n")
        self.assertTrue(r.header("X-Request-Id"))
        r = get(s.port, "/api/things/7")
        self.assertEqual(r.status, 201)
        self.assertEqual(r.header("X-Extra"), "yes-indeed")
        self.assertEqual(r.header("Content-Type"), "application/json")
        self.assertEqual(r.header("X-Content-Type-Options"), "nosniff")
        self.assertIsNone(get(s.port, "/hello").header("X-Content-Type-Options"))

    def test_serve_refuses_a_broken_config(self):
        path = self.write("vie.yaml", "server:\n  workers: -1\n")
        r = run_vie(["serve", "-c", path])
        self.assertEqual(r.returncode, EXIT_CONFIG)
        self.assertRegex(r.stderr, re.escape(path) + r":2:\d+: ")

    def test_sighup_without_a_supervisor_is_ignored(self):
        path = self.write("vie.yaml", GOOD)
        s = start_server(self, "-c", path)  # --workers 0: one process
        s.signal(signal.SIGHUP)
        s.wait_log(r"SIGHUP ignored: reloading the config needs a supervisor", scaled(5))
        self.assertEqual(get(s.port, "/hello").status, 200)

    def test_flags_win_over_the_config(self):
        path = self.write("vie.yaml", GOOD.replace("listen: 127.0.0.1:0", "listen: 127.0.0.1:1"))
        s = start_server(self, "-c", path)  # --listen 127.0.0.1:0 from the harness wins
        self.assertEqual(get(s.port, "/hello").status, 200)

    def test_sighup_reloads_the_config(self):
        path = self.write("vie.yaml", GOOD.replace("workers: 0", "workers: 1"))
        s = start_server(self, "-c", path, "--workers", "1")
        self.assertEqual(get(s.port, "/hello").body, b"hello world\n")
        with open(path, "w") as f:
            f.write(GOOD.replace("hello ${WHO:-world}", "reloaded"))
        s.signal(signal.SIGHUP)
        deadline = time.monotonic() + scaled(10)
        body = None
        while time.monotonic() < deadline:
            body = get(s.port, "/hello").body
            if body == b"reloaded\n":
                break
            time.sleep(0.05)
        self.assertEqual(body, b"reloaded\n")
        # a broken config on reload keeps the running one
        with open(path, "w") as f:
            f.write("server:\n  workers: lots\n")
        s.signal(signal.SIGHUP)
        s.wait_log(r"new config was refused", scaled(10))
        self.assertEqual(get(s.port, "/hello").body, b"reloaded\n")


if __name__ == "__main__":
    unittest.main()
