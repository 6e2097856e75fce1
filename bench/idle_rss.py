#!/usr/bin/env python3
"""Resident memory a server spends per idle keep-alive connection.

    idle_rss.py --pid PID --port PORT [--conns 5000] [--name vie]

The server (already running, listening on 127.0.0.1:PORT) is warmed up with
a few requests, its resident memory is read, then CONNS connections are
opened and each is fully used once (GET / sent, whole response read) and
kept open. After a short settle the memory is read again:

    bytes per connection = (rss_after - rss_before) / CONNS

RSS is summed over PID and its child processes (nginx: master + worker).
It is read from /proc/PID/smaps_rollup ("Rss:", exact: the kernel walks the
page tables) when available, else from VmRSS in /proc/PID/status (a cached
counter that can lag by a few hundred KiB). Kernel socket buffers are not in
any process's RSS and so are not counted, for any server.

The last line on stdout is machine-readable:
    idle_rss name=vie conns=5000 before_kib=... after_kib=... bytes_per_conn=...
Exit status 1 when the measurement could not be made (refused or closed
connections, wrong responses, too few file descriptors).
"""
import argparse
import os
import resource
import socket
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
BODY = b"Hello, World!"


def die(msg):
    print(f"idle_rss: {msg}", file=sys.stderr)
    sys.exit(1)


def tree(pid):
    """pid and its direct children (enough for nginx master + worker)."""
    pids = [pid]
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # the comm field may hold spaces: fields after the last ')' are
        # state, ppid, ...
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            pids.append(int(d))
    return pids


def rss_kib(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                key = "Rss:"
                text = f.read()
        except OSError:
            with open(f"/proc/{p}/status") as f:
                key = "VmRSS:"
                text = f.read()
        for line in text.splitlines():
            if line.startswith(key):
                total += int(line.split()[1])
                break
    return total


def read_response(s):
    """Read exactly one response (Content-Length framed); return status, body."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the response head")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed in the middle of the body")
        rest += chunk
    if len(rest) != length:
        raise ConnectionError("more bytes than the one response asked for")
    return status, rest


def use_once(s):
    s.sendall(REQUEST)
    status, body = read_response(s)
    if status != 200 or body != BODY:
        raise ConnectionError(f"unexpected response: {status} {body[:40]!r}")


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pid", type=int, required=True, help="server process id")
    ap.add_argument("--port", type=int, required=True, help="server port on 127.0.0.1")
    ap.add_argument("--conns", type=int, default=5000, help="idle connections (5000)")
    ap.add_argument("--name", default="server", help="label for the output")
    ap.add_argument("--settle", type=float, default=0.5, help="seconds to wait before reading RSS")
    a = ap.parse_args()

    # One descriptor per connection, plus some slack.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = a.conns + 64
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            die(f"need {need} file descriptors, the hard limit is {hard} (ulimit -Hn)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))

    # Warm-up: let the server fault in its code paths, allocator arenas and
    # per-request buffers before the baseline is taken.
    try:
        for _ in range(16):
            s = connect(a.port)
            for _ in range(4):
                use_once(s)
            s.close()
    except (OSError, ValueError, IndexError) as e:
        die(f"{a.name}: warm-up failed: {e}")
    time.sleep(a.settle)
    before = rss_kib(a.pid)

    socks = []
    t0 = time.monotonic()
    try:
        for i in range(a.conns):
            s = connect(a.port)
            socks.append(s)
            use_once(s)
    except (OSError, ValueError, IndexError) as e:
        die(f"{a.name}: connection {len(socks)} of {a.conns} failed: {e}")
    opened = time.monotonic() - t0
    time.sleep(a.settle)
    after = rss_kib(a.pid)

    # All of them must still be open (not closed by a limit or a timeout):
    # an open idle socket has nothing to read (EAGAIN); a closed one reads b"".
    closed = 0
    for s in socks:
        s.setblocking(False)  # (with a timeout set, Python would wait out EAGAIN)
        try:
            if s.recv(1, socket.MSG_PEEK) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    for s in socks:
        s.close()
    if closed:
        die(f"{a.name}: {closed} of {a.conns} connections were closed by the server")

    per_conn = (after - before) * 1024 / a.conns
    print(f"  {a.name}: {a.conns} idle keep-alive connections opened in {opened:.2f}s; "
          f"RSS {before} KiB -> {after} KiB = {per_conn:.0f} bytes/connection",
          file=sys.stderr)
    print(f"idle_rss name={a.name} conns={a.conns} before_kib={before} after_kib={after} "
          f"bytes_per_conn={per_conn:.0f}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
