"""Static files through the real binary, configured in YAML (a route with
`static: {root, index, cache_control}` on /assets/*path): a large random
file downloads intact with curl (sha256), over HTTP/1.1 and 1.0; a Range
request gets 206 with the right bytes; If-None-Match and If-Modified-Since
get 304; HEAD has the length and no body; traversal and missing files are
refused with problem+json and never leak what is outside root; pipelined
file bodies and a plain answer come back in order on one connection; the
index file and the slash redirect; and clients that leave mid-download
leave the server healthy, with its descriptor count back to where it
was."""

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from vietest import (VieTestCase, connect, get, run_vie, scaled, start_server)

BIG = 8 << 20
SMALL = b"small file\n"
SECRET = b"TOP-SECRET-OUTSIDE-ROOT\n"

CONFIG = """\
server:
  workers: 0
routes:
  - method: GET
    path: /assets/*path
    static: {{root: {root}, index: index.html, cache_control: "public, max-age=60"}}
  - path: /hello
    respond: {{status: 200, body: "hi\\n", content_type: text/plain}}
"""


def sha256(b):
    return hashlib.sha256(b).hexdigest()


class StaticTest(VieTestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="vie-static-")
        cls.root = os.path.join(cls.dir, "public")
        os.makedirs(os.path.join(cls.root, "sub"))
        os.makedirs(os.path.join(cls.dir, "outside"))
        with open(os.path.join(cls.dir, "outside", "secret.txt"), "wb") as f:
            f.write(SECRET)
        cls.big = os.urandom(BIG)
        with open(os.path.join(cls.root, "big.bin"), "wb") as f:
            f.write(cls.big)
        with open(os.path.join(cls.root, "small.txt"), "wb") as f:
            f.write(SMALL)
        with open(os.path.join(cls.root, "index.html"), "wb") as f:
            f.write(b"<h1>home</h1>\n")
        with open(os.path.join(cls.root, "sub", "index.html"), "wb") as f:
            f.write(b"<h1>sub</h1>\n")
        os.symlink("../outside/secret.txt", os.path.join(cls.root, "link_out"))
        os.symlink("../outside", os.path.join(cls.root, "dir_out"))
        cls.config = os.path.join(cls.dir, "vie.yaml")
        with open(cls.config, "w") as f:
            f.write(CONFIG.format(root=cls.root))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        self.server = start_server(self, "-c", self.config)
        self.port = self.server.port
        self.url = "http://127.0.0.1:%d" % self.port

    def curl(self, *args, timeout=None):
        r = subprocess.run(["curl", "-sS", "--max-time", str(int(scaled(30)))] + list(args),
                           capture_output=True, timeout=timeout or scaled(40))
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def test_check_accepts_the_config(self):
        r = run_vie(["check", "-c", self.config])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("GET /assets/*path", r.stdout)

    def test_large_file_downloads_intact_with_curl(self):
        out = os.path.join(self.dir, "download-%d.bin" % os.getpid())
        self.addCleanup(lambda: os.path.exists(out) and os.unlink(out))
        head = self.curl("-D", "-", "-o", out, self.url + "/assets/big.bin").decode("latin-1")
        self.assertTrue(head.startswith("HTTP/1.1 200 OK\r\n"), head)
        self.assertIn("\r\nContent-Length: %d\r\n" % BIG, head)
        self.assertIn("\r\nContent-Type: application/octet-stream\r\n", head)
        self.assertIn("\r\nAccept-Ranges: bytes\r\n", head)
        self.assertIn("\r\nCache-Control: public, max-age=60\r\n", head)
        self.assertRegex(head, r"\r\nETag: \"[0-9a-f]+-[0-9a-f]+-[0-9a-f]+\"\r\n")
        self.assertRegex(head, r"\r\nLast-Modified: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r\n")
        with open(out, "rb") as f:
            self.assertEqual(sha256(f.read()), sha256(self.big))
        # HTTP/1.0 too: the same bytes, then the server closes.
        body = self.curl("--http1.0", self.url + "/assets/big.bin")
        self.assertEqual(len(body), BIG)
        self.assertEqual(sha256(body), sha256(self.big))

    def test_range(self):
        body = self.curl("-r", "1000-1999", "-D", os.devnull, self.url + "/assets/big.bin")
        self.assertEqual(body, self.big[1000:2000])
        r = get(self.port, "/assets/big.bin", b"Range: bytes=-100\r\n")
        self.assertEqual(r.status, 206, r)
        self.assertEqual(r.header("Content-Range"), "bytes %d-%d/%d" % (BIG - 100, BIG - 1, BIG))
        self.assertEqual(r.header("Content-Length"), "100")
        self.assertEqual(r.body, self.big[-100:])
        r = get(self.port, "/assets/big.bin", b"Range: bytes=%d-\r\n" % BIG)
        self.assert_problem(r, 416)
        self.assertEqual(r.header("Content-Range"), "bytes */%d" % BIG)
        # Several ranges: the whole file, 200.
        r = get(self.port, "/assets/small.txt", b"Range: bytes=0-1,4-5\r\n")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, SMALL)

    def test_not_modified(self):
        r = get(self.port, "/assets/small.txt")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, SMALL)
        self.assertEqual(r.header("Content-Type"), "text/plain; charset=utf-8")
        etag, lm = r.header("ETag"), r.header("Last-Modified")
        self.assertIsNotNone(etag)
        self.assertIsNotNone(lm)
        for extra in (b"If-None-Match: " + etag.encode() + b"\r\n",
                      b"If-None-Match: \"other\", W/" + etag.encode() + b"\r\n",
                      b"If-Modified-Since: " + lm.encode() + b"\r\n"):
            c = connect(self.port)
            c.send(b"GET /assets/small.txt HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n"
                   b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 304, (extra, r))
            self.assertEqual(r.header("ETag"), etag)
            self.assertEqual(r.header("Cache-Control"), "public, max-age=60")
            self.assertIsNone(r.header("Content-Length"))
            # Nothing followed the 304's head: the next answer is next.
            r2 = c.read_response()
            self.assertEqual((r2.status, r2.body), (200, b"hi\n"))
            c.close()
        r = get(self.port, "/assets/small.txt", b"If-None-Match: \"other\"\r\n")
        self.assertEqual(r.status, 200, r)

    def test_head(self):
        c = connect(self.port)
        c.send(b"HEAD /assets/big.bin HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response("HEAD")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Length"), str(BIG))
        r2 = c.read_response()
        self.assertEqual((r2.status, r2.body), (200, b"hi\n"))
        c.close()
        head = self.curl("-I", self.url + "/assets/big.bin").decode("latin-1")
        self.assertIn("\r\nContent-Length: %d\r\n" % BIG, head)

    def test_traversal_and_missing_are_refused(self):
        cases = [
            # Reaching the handler: no such file, a symlink out of root, a
            # leading '/' in the file path.
            ("/assets/missing.txt", 404),
            ("/assets/sub/missing/", 404),
            ("/assets/link_out", 404),
            ("/assets/dir_out/secret.txt", 404),
            ("/assets//etc/passwd", 404),
            ("/assets/%2Fetc%2Fpasswd", 404),
            ("/assets/small.txt/", 404),
            # Refused before routing (400): a path that climbs above the
            # root, a dot segment encoded inside the file path, a NUL.
            ("/assets/../../outside/secret.txt", 400),
            ("/assets/%2e%2e/%2e%2e/outside/secret.txt", 400),
            ("/assets/..%2f..%2foutside%2fsecret.txt", 400),
            ("/assets/small.txt%00.png", 400),
            # Resolved before routing to a path with no route.
            ("/assets/../outside/secret.txt", 404),
        ]
        for path, status in cases:
            r = get(self.port, path)
            self.assert_problem(r, status)
            self.assertNotIn(SECRET.strip(), r.body, path)
        # The server still serves.
        self.assertEqual(get(self.port, "/assets/small.txt").body, SMALL)

    def test_index_and_redirect(self):
        r = get(self.port, "/assets/")
        self.assertEqual((r.status, r.body), (200, b"<h1>home</h1>\n"))
        self.assertEqual(r.header("Content-Type"), "text/html; charset=utf-8")
        r = get(self.port, "/assets/sub")
        self.assertEqual(r.status, 301, r)
        self.assertEqual(r.header("Location"), "/assets/sub/")
        r = get(self.port, "/assets/sub/")
        self.assertEqual((r.status, r.body), (200, b"<h1>sub</h1>\n"))

    def test_pipelined_files_in_order(self):
        c = connect(self.port, timeout=scaled(20))
        c.send(b"GET /assets/big.bin HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /assets/small.txt HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /assets/big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=5-1000004\r\n\r\n"
               b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(sha256(r.body), sha256(self.big))
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, SMALL))
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"hi\n"))
        r = c.read_response()
        self.assertEqual(r.status, 206)
        self.assertEqual(r.body, self.big[5:1000005])
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"hi\n"))
        self.assert_open(c)
        c.close()

    def test_clients_leaving_mid_download(self):
        baseline = self.server.fd_count()  # the listener, the loop, root's directory
        for i in range(4):
            c = connect(self.port, rcvbuf=16384)
            c.send(b"GET /assets/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            got = 0
            end = time.monotonic() + scaled(5)
            while got < 200000 and time.monotonic() < end:
                chunk = c.sock.recv(65536)
                if not chunk:
                    break
                got += len(chunk)
            self.assertGreaterEqual(got, 200000)
            if i % 2:
                # An abortive close (RST) rather than a FIN.
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                  b"\x01\x00\x00\x00\x00\x00\x00\x00")
            c.close()
        # Every connection and its file are closed again.
        deadline = time.monotonic() + scaled(5)
        while time.monotonic() < deadline and self.server.fd_count() > baseline:
            time.sleep(0.02)
        self.assertEqual(self.server.fd_count(), baseline)
        r = get(self.port, "/hello")
        self.assertEqual((r.status, r.body), (200, b"hi\n"))
        body = self.curl(self.url + "/assets/big.bin")
        self.assertEqual(sha256(body), sha256(self.big))


if __name__ == "__main__":
    unittest.main()
