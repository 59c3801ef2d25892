#!/usr/bin/env python3
"""Loopback throughput of the Logstash sink: json_lines against the beats protocol.

    cargo build --release --bin factorio-isr
    python3 benches/peers/beats_throughput.py [--lines 1000000] [--runs 3]

Writes a log of LINES console chat lines under `target/peers/` (each one a `chat` event), then,
RUNS rounds, the settings in turn within each round, runs `factorio-isr run --from-beginning
--logstash 127.0.0.1:PORT` into a receiver in this process on loopback:

- `tcp`: counts newline-terminated lines, as Logstash's `tcp` input with `json_lines` reads
  them (`probation_ms = 0`: the one-time hold of a new connection is not throughput);
- `beats W×P, level L`: `protocol = "beats"`, `window_size = W`, `pipelining = P`,
  `compression_level = L`; the receiver walks every frame (inflating `C` frames) and
  acknowledges each window once it has all of it, as Logstash's `beats` input does.

The time is from the receiver's first byte to its last event (beats: its last acknowledgement
sent). Prints the median per setting in events per second. The receiver is Python, on the same
machine: it takes a core of its own, and its frame walking bounds what beats can show; compare
settings within one sitting only.
"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import threading
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORK = os.path.join(ROOT, "target", "peers")
ISR = os.path.join(ROOT, "target", "release", "factorio-isr")
IDLE_END_S = 15.0


class Receiver:
    def __init__(self, beats):
        self.beats = beats
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        self.events = 0
        self.first = None
        self.last = None
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            # Acknowledgements are small writes: without TCP_NODELAY, Nagle's algorithm holds
            # one back until the sender's delayed ACK (40 ms) when two windows are in flight.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            target = self._beats if self.beats else self._lines
            threading.Thread(target=target, args=(conn,), daemon=True).start()

    def _got(self, n):
        now = time.monotonic()
        with self.lock:
            if self.first is None:
                self.first = now
            self.last = now
            self.events += n

    def _lines(self, conn):
        with conn:
            while True:
                try:
                    b = conn.recv(1 << 20)
                except OSError:
                    return
                if not b:
                    return
                self._got(b.count(b"\n"))

    def _beats(self, conn):
        buf = b""
        window = 0  # events still due in the current window; 0: a `W` frame is due
        size = 0
        with conn:
            while True:
                try:
                    b = conn.recv(1 << 20)
                except OSError:
                    return
                if not b:
                    return
                if self.first is None:
                    self._got(0)
                buf = buf + b if buf else b
                pos = 0
                while True:
                    if window == 0:
                        if len(buf) - pos < 6:
                            break
                        assert buf[pos:pos + 2] == b"2W", buf[pos:pos + 2]
                        (size,) = struct.unpack_from(">I", buf, pos + 2)
                        window = size
                        pos += 6
                        continue
                    if len(buf) - pos < 6:
                        break
                    kind = buf[pos + 1:pos + 2]
                    if kind == b"J":
                        if len(buf) - pos < 10:
                            break
                        (n,) = struct.unpack_from(">I", buf, pos + 6)
                        if len(buf) - pos < 10 + n:
                            break
                        pos += 10 + n
                        window -= 1
                    elif kind == b"C":
                        (n,) = struct.unpack_from(">I", buf, pos + 2)
                        if len(buf) - pos < 6 + n:
                            break
                        inner = zlib.decompress(buf[pos + 6:pos + 6 + n])
                        at = 0
                        while at < len(inner):
                            (m,) = struct.unpack_from(">I", inner, at + 6)
                            at += 10 + m
                            window -= 1
                        pos += 6 + n
                    else:
                        raise ValueError(f"frame {buf[pos:pos + 2]!r}")
                    if window == 0:
                        conn.sendall(struct.pack(">ccI", b"2", b"A", size))
                        self._got(size)
                buf = buf[pos:]

    def close(self):
        self.srv.close()


def make_log(lines):
    path = os.path.join(WORK, f"chat-{lines}.log")
    if not os.path.exists(path):
        os.makedirs(WORK, exist_ok=True)
        with open(path, "w") as f:
            for i in range(lines):
                f.write(f"2025-10-08 08:58:34 [CHAT] w{i % 7}: seq={i:06} "
                        "the quick brown fox jumps over the lazy dog\n")
    return path


def run(log, lines, config_text, beats):
    d = os.path.join(WORK, "beats-run")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "logs"))
    os.link(log, os.path.join(d, "logs", "console.log"))
    config = os.path.join(d, "isr.toml")
    with open(config, "w") as f:
        f.write(config_text)
    rx = Receiver(beats)
    env = dict(os.environ, STATE_DIRECTORY=os.path.join(d, "state"), METRICS_ENABLED="false",
               LOG_FORMAT="json", LOG_LEVEL="warn")
    p = subprocess.Popen([ISR, "run", "--config", config, "--from-beginning", "--logstash",
                          f"127.0.0.1:{rx.port}", os.path.join(d, "logs")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                         start_new_session=True)
    try:
        while True:
            time.sleep(0.05)
            with rx.lock:
                last, got = rx.last, rx.events
            if got >= lines or (last is not None and time.monotonic() - last > IDLE_END_S):
                break
            if p.poll() is not None:
                raise RuntimeError(f"factorio-isr exited early with {p.returncode}")
    finally:
        if p.returncode is None:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait()
        rx.close()
    return got, rx.last - rx.first


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    log = make_log(args.lines)
    settings = [("tcp (json_lines)", "[logstash]\nprobation_ms = 0\n", False)]
    for w, p, level in [(2048, 2, 0), (512, 2, 0), (2048, 1, 0), (8192, 2, 0), (2048, 2, 3)]:
        settings.append((f"beats {w}x{p}, level {level}",
                         f"[logstash]\nprotocol = \"beats\"\nwindow_size = {w}\n"
                         f"pipelining = {p}\ncompression_level = {level}\n", True))
    spans = {name: [] for name, _, _ in settings}
    for r in range(args.runs):
        for name, text, beats in settings:
            got, span = run(log, args.lines, text, beats)
            assert got >= args.lines, f"{name}: {got} of {args.lines} events"
            spans[name].append(span)
            print(f"run {r + 1} {name}: {span:.2f} s", flush=True)
    print(f"\n{args.lines} events, median of {args.runs}:")
    for name, _, _ in settings:
        m = statistics.median(spans[name])
        print(f"  {name:28} {m:6.2f} s  {args.lines / m / 1000:7.0f} k events/s  "
              f"(runs: {', '.join(f'{s:.2f}' for s in spans[name])})")


if __name__ == "__main__":
    main()
