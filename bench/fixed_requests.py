#!/usr/bin/env python3
"""Send exactly N GET / requests to 127.0.0.1:PORT over C keep-alive
connections, DEPTH requests per write (1 = no pipelining), and check every
answer is a whole 200. For instruction counting, where a time-boxed load
generator (wrk) would not give a fixed amount of work."""
import argparse
import socket
import sys

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--requests", type=int, required=True)
p.add_argument("--conns", type=int, default=4)
p.add_argument("--depth", type=int, default=1)
a = p.parse_args()

REQ = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
socks = [socket.create_connection(("127.0.0.1", a.port), timeout=30) for _ in range(a.conns)]
left = a.requests
pending = [b""] * a.conns


def read_answers(i, s, n):
    """Read n whole responses (Content-Length framed) from socket s."""
    buf = pending[i]
    while n:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = buf[:end].decode("latin-1")
            if not head.startswith("HTTP/1.1 200 "):
                sys.exit(f"fixed_requests: unexpected answer: {head.splitlines()[0]}")
            length = int(head.lower().split("content-length:")[1].split("\r\n")[0])
            if len(buf) >= end + 4 + length:
                buf = buf[end + 4 + length:]
                n -= 1
                continue
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("fixed_requests: the server closed the connection")
        buf += chunk
    pending[i] = buf


while left > 0:
    for i, s in enumerate(socks):
        n = min(a.depth, left)
        if n == 0:
            break
        s.sendall(REQ * n)
        read_answers(i, s, n)
        left -= n
for s in socks:
    s.close()
