#!/usr/bin/env python3
"""Slow clients for benches/slow_clients.sh (issue 14): uploaders that trickle a body and
readers that drain a large answer slowly, over HTTPS to one loopback port, until a deadline.

    slow_clients.py PORT SECONDS UPLOADERS UPLOAD_BYTES UPLOAD_RATE READERS DOWNLOAD_BYTES READ_RATE

Rates are bytes per second per client. Each client repeats its transfer (a new connection each
time) until SECONDS have passed, then stops mid-transfer. Prints one JSON line: transfers
completed, bytes moved, answers by status, errors. Bounded: every client stops at the deadline,
every socket operation times out after 30 s.
"""
import json
import socket
import ssl
import sys
import threading
import time

TICK = 0.1  # seconds between trickles
READ_RCVBUF = 32 * 1024  # a small receive window, so the sender really waits for the reader

port, seconds = int(sys.argv[1]), float(sys.argv[2])
uploaders, upload_bytes, upload_rate = map(int, sys.argv[3:6])
readers, download_bytes, read_rate = map(int, sys.argv[6:9])
deadline = time.monotonic() + seconds
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
lock = threading.Lock()
stats = {"uploads_done": 0, "downloads_done": 0, "bytes_up": 0, "bytes_down": 0,
         "status": {}, "errors": 0, "last_error": ""}


def add(key, n=1):
    with lock:
        stats[key] += n


def connect(rcvbuf=None):
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.settimeout(30)
    raw.connect(("127.0.0.1", port))
    return ctx.wrap_socket(raw, server_hostname="localhost")


def status_of(head):
    line = head.split(b"\r\n", 1)[0].split()
    code = line[1].decode() if len(line) > 1 else "?"
    with lock:
        stats["status"][code] = stats["status"].get(code, 0) + 1
    return code


def pace(started, done, rate):
    """Sleeps until `done` bytes are due at `rate` since `started`, or the deadline."""
    due = started + done / rate
    time.sleep(max(0.0, min(due, deadline) - time.monotonic()))


def upload():
    s = connect()
    try:
        s.sendall(b"POST /uploads HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n"
                  b"Content-Length: %d\r\nConnection: close\r\n\r\n" % upload_bytes)
        chunk = max(1, int(upload_rate * TICK))
        sent, started = 0, time.monotonic()
        while sent < upload_bytes:
            if time.monotonic() >= deadline:
                return
            n = min(chunk, upload_bytes - sent)
            s.sendall(b"u" * n)
            sent += n
            add("bytes_up", n)
            pace(started, sent, upload_rate)
        head = b""
        while b"\r\n" not in head:
            got = s.recv(4096)
            if not got:
                raise ConnectionError("closed before the answer")
            head += got
        if status_of(head) == "200":
            add("uploads_done")
    finally:
        s.close()


def download():
    s = connect(READ_RCVBUF)
    try:
        s.sendall(b"GET /downloads/%d HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % download_bytes)
        chunk = max(1, int(read_rate * TICK))
        buf, body, started, code = b"", 0, time.monotonic(), None
        while True:
            if time.monotonic() >= deadline:
                return
            got = s.recv(chunk)
            if not got:
                break
            if code is None:
                buf += got
                if b"\r\n\r\n" not in buf:
                    continue
                head, rest = buf.split(b"\r\n\r\n", 1)
                code = status_of(head)
                got = rest
            body += len(got)
            add("bytes_down", len(got))
            if body >= download_bytes:
                break
            pace(started, body, read_rate)
        if code == "200" and body >= download_bytes:
            add("downloads_done")
    finally:
        s.close()


def client(transfer):
    while time.monotonic() < deadline:
        try:
            transfer()
        except (OSError, ConnectionError) as e:
            with lock:
                stats["errors"] += 1
                stats["last_error"] = repr(e)
            time.sleep(0.2)


threads = [threading.Thread(target=client, args=(upload,), daemon=True) for _ in range(uploaders)]
threads += [threading.Thread(target=client, args=(download,), daemon=True) for _ in range(readers)]
for t in threads:
    t.start()
for t in threads:
    t.join(timeout=max(0.0, deadline - time.monotonic()) + 35)
print(json.dumps(stats, sort_keys=True))
