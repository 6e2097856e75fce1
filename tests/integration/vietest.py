"""Shared helpers of Vie's integration tests.

Everything here drives the real `vie` binary over loopback with nothing
but the Python standard library:

- Server: starts `vie serve --listen 127.0.0.1:0 [flags]`, learns the port
  from the "listening on http://127.0.0.1:PORT" log line, drains stderr in a
  thread (so the pipe never fills), and on stop sends SIGTERM and checks a
  clean exit (status 0 within 10 s, no sanitizer report in the log).
- RawConn: a raw socket with a read buffer, which sends bytes and reads
  responses one at a time (Content-Length, chunked or close-delimited), so
  tests can pipeline, send malformed requests, and see when the server
  closes the connection.

Environment:
- VIE_BIN: the binary (default /work/main/build/vie).
- VIE_SANITIZED=1: the binary is an ASan/UBSan build; waits are scaled by
  SLOW (3x).
"""

import json
import os
import re
import resource
import select
import signal
import socket
import subprocess
import threading
import time
import unittest

VIE_BIN = os.environ.get("VIE_BIN", "/work/main/build/vie")
SANITIZED = os.environ.get("VIE_SANITIZED", "") not in ("", "0")
SLOW = 3.0 if SANITIZED else 1.0
HOST = "127.0.0.1"

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")
_LISTEN_RE = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


def scaled(seconds):
    """A wait or an upper bound, stretched for sanitized builds."""
    return seconds * SLOW


def raise_nofile():
    """Raise the soft RLIMIT_NOFILE to the hard limit (this process)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass


def nofile_limit():
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run_vie(args, timeout=None):
    """Run `vie ARGS` to completion; returns the CompletedProcess (text)."""
    return subprocess.run(
        [VIE_BIN] + list(args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout if timeout is not None else scaled(10),
    )


def assert_no_sanitizer_report(testcase, text, what="vie"):
    for marker in SANITIZER_MARKERS:
        if marker in text:
            testcase.fail("%s: sanitizer report (%r) in its stderr:\n%s" % (what, marker, text))


# ---------------------------------------------------------------------------
# The server process


class Server:
    """One `vie serve` child process on an ephemeral loopback port."""

    def __init__(self, *flags, listen=HOST + ":0", env=None):
        self.flags = list(flags)
        # vie serve runs one worker per core by default; the tests that
        # count a process's fds or connections mean one process, so they
        # get --workers 0 unless they ask for workers themselves.
        if not any(f in ("--workers", "-w") or str(f).startswith("--workers=") for f in self.flags):
            self.flags = ["--workers", "0"] + self.flags
        self.listen = listen
        self.env = env
        self.proc = None
        self.port = None
        self.lines = []  # stderr lines, as they arrive
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._eof = threading.Event()
        self._thread = None
        self.returncode = None

    # -- lifecycle --

    def start(self, timeout=None):
        timeout = timeout if timeout is not None else scaled(10)
        args = [VIE_BIN, "serve", "--listen", self.listen] + self.flags
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            preexec_fn=raise_nofile,
        )
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready.wait(0.05):
                return self
            if self.proc.poll() is not None and self._eof.is_set():
                break
        rc = self.proc.poll()
        if rc is None:
            self.proc.kill()
            self.proc.wait(5)
        self._eof.wait(2)
        raise AssertionError(
            "vie serve %s did not report its port within %.0f s (exit %s); stderr:\n%s"
            % (" ".join(self.flags), timeout, self.proc.returncode, self.log())
        )

    def _drain(self):
        f = self.proc.stderr
        try:
            for raw in iter(f.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                with self._lock:
                    self.lines.append(line)
                if self.port is None:
                    m = _LISTEN_RE.search(line)
                    if m:
                        self.port = int(m.group(1))
                        self._ready.set()
        finally:
            try:
                f.close()
            except OSError:
                pass
            self._eof.set()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid

    def signal(self, signum=signal.SIGTERM):
        if self.running():
            self.proc.send_signal(signum)

    def wait_exit(self, timeout):
        """Wait for the process to exit; returns its status or None."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._eof.wait(5)
        return self.returncode

    def stop(self, testcase=None, timeout=None):
        """SIGTERM, expect exit 0 within `timeout` and a clean log."""
        timeout = timeout if timeout is not None else scaled(10)
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.wait_exit(timeout)
        if rc is None:
            self.proc.kill()
            self.proc.wait(5)
            self._eof.wait(5)
            msg = "vie did not exit within %.0f s of SIGTERM; stderr:\n%s" % (timeout, self.log())
            if testcase:
                testcase.fail(msg)
            raise AssertionError(msg)
        self.check_log(testcase)
        if rc != 0:
            msg = "vie exited %d after SIGTERM (expected 0); stderr:\n%s" % (rc, self.log())
            if testcase:
                testcase.fail(msg)
            raise AssertionError(msg)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    # -- log --

    def log(self):
        with self._lock:
            return "\n".join(self.lines)

    def log_lines(self):
        with self._lock:
            return list(self.lines)

    def check_log(self, testcase=None):
        text = self.log()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                msg = "sanitizer report (%r) in vie's stderr:\n%s" % (marker, text)
                if testcase:
                    testcase.fail(msg)
                raise AssertionError(msg)

    def wait_log(self, pattern, timeout, count=1):
        """Wait until `count` stderr lines match the regex; returns them or None."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = [l for l in self.log_lines() if rx.search(l)]
            if len(found) >= count:
                return found
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    # -- process introspection --

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


def start_server(testcase, *flags, **kw):
    """Start a server whose stop (and log check) is a cleanup of testcase."""
    s = Server(*flags, **kw)
    s.start()
    testcase.addCleanup(_cleanup_server, testcase, s)
    return s


def _cleanup_server(testcase, s):
    if s.returncode is not None:  # the test already stopped it
        s.check_log(testcase)
        return
    s.stop(testcase)


# ---------------------------------------------------------------------------
# Responses


class Response:
    def __init__(self, version, status, reason, headers, body, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # [(name, value)] in order
        self.body = body
        self.raw_head = raw_head

    def header(self, name, default=None):
        n = name.lower()
        for k, v in self.headers:
            if k.lower() == n:
                return v
        return default

    def header_all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def has_token(self, name, token):
        """Whether a comma-separated header (Connection) holds token."""
        for v in self.header_all(name):
            for t in v.split(","):
                if t.strip().lower() == token.lower():
                    return True
        return False

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Response %d %s %r body=%r>" % (
            self.status,
            self.reason,
            self.headers,
            self.body[:200],
        )


class ConnectionClosed(Exception):
    """The server closed the connection before a whole response arrived."""


class RawConn:
    """A client socket with a read buffer. Every operation is bounded in time."""

    def __init__(self, port, timeout=None, rcvbuf=None, sndbuf=None, connect=True):
        self.timeout = timeout if timeout is not None else scaled(5)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Fixed buffer sizes turn the kernel's autotuning off for this socket.
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self.sock.settimeout(self.timeout)
        self.buf = bytearray()
        self.eof = False
        self.reset = False
        if connect:
            self.sock.connect((HOST, port))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def try_send(self, data):
        """Send, ignoring a connection the server already closed."""
        try:
            self.send(data)
            return True
        except OSError:
            return False

    def _fill(self, deadline):
        """Read more bytes into buf; False at EOF. Raises socket.timeout."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("deadline passed")
        self.sock.settimeout(min(left, self.timeout))
        try:
            chunk = self.sock.recv(1 << 18)
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        finally:
            self.sock.settimeout(self.timeout)
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _deadline(self, timeout):
        return time.monotonic() + (timeout if timeout is not None else self.timeout)

    def read_until(self, delim, deadline, limit=1 << 20):
        start = 0
        while True:
            i = self.buf.find(delim, start)
            if i >= 0:
                out = bytes(self.buf[: i + len(delim)])
                del self.buf[: i + len(delim)]
                return out
            start = max(0, len(self.buf) - len(delim) + 1)
            if len(self.buf) > limit:
                raise AssertionError("no %r within %d bytes" % (delim, limit))
            if not self._fill(deadline):
                raise ConnectionClosed(
                    "connection closed while waiting for %r (have %r)" % (delim, bytes(self.buf[:200]))
                )

    def read_exact(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise ConnectionClosed(
                    "connection closed with %d of %d bytes read" % (len(self.buf), n)
                )
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_response(self, method="GET", timeout=None):
        """Read the next response (1xx included) on this connection."""
        deadline = self._deadline(timeout)
        head = self.read_until(b"\r\n\r\n", deadline, limit=1 << 16)
        lines = head[:-4].split(b"\r\n")
        m = re.match(rb"^(HTTP/\d\.\d) (\d{3}) ?(.*)$", lines[0])
        if not m:
            raise AssertionError("bad status line %r" % lines[0])
        version = m.group(1).decode()
        status = int(m.group(2))
        reason = m.group(3).decode("latin-1")
        headers = []
        for l in lines[1:]:
            name, sep, value = l.partition(b":")
            if not sep or not name or name != name.strip():
                raise AssertionError("bad header line %r in %r" % (l, head))
            headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
        resp = Response(version, status, reason, headers, b"", head)
        if method == "HEAD" or status < 200 or status in (204, 304):
            return resp
        te = resp.header("Transfer-Encoding")
        cl = resp.header_all("Content-Length")
        if te is not None:
            if te.strip().lower() != "chunked":
                raise AssertionError("unexpected Transfer-Encoding %r" % te)
            resp.body = self._read_chunked(deadline)
        elif cl:
            if len(set(cl)) != 1 or not cl[0].isdigit():
                raise AssertionError("bad Content-Length %r" % cl)
            resp.body = self.read_exact(int(cl[0]), deadline)
        else:
            resp.body = self.read_to_eof(max(0.01, deadline - time.monotonic()))
        return resp

    def _read_chunked(self, deadline):
        body = bytearray()
        while True:
            line = self.read_until(b"\r\n", deadline, limit=4096)
            size = int(line[:-2].split(b";")[0].strip(), 16)
            if size == 0:
                break
            body += self.read_exact(size, deadline)
            if self.read_exact(2, deadline) != b"\r\n":
                raise AssertionError("chunk data not followed by CRLF")
        while self.read_until(b"\r\n", deadline, limit=1 << 16) != b"\r\n":
            pass  # trailer fields
        return bytes(body)

    def read_final_response(self, method="GET", timeout=None):
        """The next non-1xx response, skipping interim ones."""
        deadline = self._deadline(timeout)
        while True:
            r = self.read_response(method, max(0.01, deadline - time.monotonic()))
            if r.status >= 200:
                return r

    def read_to_eof(self, timeout=None):
        """Everything until the server closes; raises socket.timeout if it
        does not close within timeout."""
        deadline = self._deadline(timeout)
        while self._fill(deadline):
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def closed_by_server(self, timeout=None):
        """True if the server closes (EOF or reset) within timeout; bytes
        that arrive meanwhile are kept in buf."""
        deadline = self._deadline(timeout)
        try:
            while self._fill(deadline):
                pass
        except (socket.timeout, TimeoutError):
            return False
        return True

    def wait_readable(self, timeout):
        if self.buf or self.eof:
            return True
        r, _, _ = select.select([self.sock], [], [], timeout)
        return bool(r)


def connect(port, timeout=None, **kw):
    return RawConn(port, timeout=timeout, **kw)


def exchange(port, data, method="GET", timeout=None):
    """Open a connection, send data, read one response. Returns (resp, conn)."""
    c = RawConn(port, timeout=timeout)
    c.send(data)
    return c.read_response(method), c


def get(port, path="/", extra=b"", timeout=None):
    req = b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n"
    r, c = exchange(port, req, timeout=timeout)
    c.close()
    return r


class VieTestCase(unittest.TestCase):
    """Assertions shared by the suites."""

    maxDiff = 4000

    def assert_problem(self, resp, status):
        self.assertEqual(resp.status, status, resp)
        ct = (resp.header("Content-Type") or "").split(";")[0].strip().lower()
        self.assertEqual(ct, "application/problem+json", resp)
        doc = resp.json()
        for key in ("type", "title", "status", "detail"):
            self.assertIn(key, doc, resp)
        self.assertEqual(doc["status"], status, resp)
        self.assertIsInstance(doc["title"], str)
        self.assertIsInstance(doc["detail"], str)
        return doc

    def assert_closed(self, conn, timeout=None, what=""):
        timeout = timeout if timeout is not None else scaled(5)
        self.assertTrue(
            conn.closed_by_server(timeout),
            "the server did not close the connection within %.1f s %s" % (timeout, what),
        )

    def assert_open(self, conn, wait=0.2, what=""):
        self.assertFalse(
            conn.closed_by_server(wait), "the server closed the connection %s" % what
        )
