#!/usr/bin/env python3
"""factorio-isr against mtail and syslog-ng, on the same files, alternately, in one sitting.

    python3 benches/peers/compare.py [--lines 2000000] [--runs 5] [--only heavy|light]

What it does, from a clean clone:

1. installs what is missing (Debian's `mtail` and `syslog-ng-core`, with apt-get; needs root or
   sudo) and builds factorio-isr and the `genlog` example in release mode;
2. writes two logs of LINES lines each under `target/peers/`: the *heavy* mix
   (`heavy_mix.py`: a chat-heavy server, about 82 % of lines match a pattern with captures)
   and the *light* mix (`genlog`: 55 % of lines match nothing);
3. for each log, RUNS rounds, the tools in alternating order within each round:
   - `replay`: `factorio-isr replay LOG > /dev/null` against `mtail --one_shot` with
     `benches/peers/factorio.mtail` (12 of the same regexes, counters only);
   - `socket`: `factorio-isr run --from-beginning --logstash` (with `probation_ms = 0`: the
     one-time hold of a new connection's first batch is not throughput) against syslog-ng (`file()` ->
     `regexp-parser` -> `network()`, `syslog-ng.conf.in`), both sending JSON lines to the same
     counting TCP receiver on loopback; the time is from the receiver's first byte to its
     last, the run ending when every line expected has arrived (factorio-isr: one per record;
     syslog-ng: the lines its rules match, counted once with Python's `re`);
4. prints, per log and scenario, the median wall time, CPU time (user + system), peak RSS and
   lines per second of each tool, and the ratio of the peer's median to factorio-isr's.

The page cache is warmed by one untimed read of each log. The machine should be otherwise
idle: on a shared machine, only ratios from the same sitting mean anything.
"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEERS = os.path.join(ROOT, "benches", "peers")
WORK = os.path.join(ROOT, "target", "peers")
ISR = os.path.join(ROOT, "target", "release", "factorio-isr")
# A run ends when the receiver has every line it should get, or after this long without a
# byte (then the table shows fewer lines than the others: a stall, not an end).
IDLE_END_S = 15.0


def say(*args):
    print(*args, file=sys.stderr, flush=True)


def ensure_tools():
    missing = [pkg for cmd, pkg in (("mtail", "mtail"), ("syslog-ng", "syslog-ng-core"),
                                    ("/usr/bin/time", "time"))
               if shutil.which(cmd) is None]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        say("installing", " ".join(missing))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends"]
                       + missing, check=True, env=env)
    say("building factorio-isr (release)")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "factorio-isr",
                    "--example", "genlog"], cwd=ROOT, check=True)


def make_logs(lines, which):
    os.makedirs(WORK, exist_ok=True)
    logs = {}
    for name in which:
        path = os.path.join(WORK, f"{name}-{lines}.log")
        if not os.path.exists(path):
            say(f"writing {path}")
            with open(path + ".tmp", "wb") as out:
                if name == "heavy":
                    cmd = [sys.executable, os.path.join(PEERS, "heavy_mix.py"), str(lines)]
                else:
                    cmd = [os.path.join(ROOT, "target", "release", "examples", "genlog"),
                           str(lines)]
                subprocess.run(cmd, stdout=out, check=True)
            os.rename(path + ".tmp", path)
        with open(path, "rb") as f:  # warm the page cache
            while f.read(1 << 24):
                pass
        logs[name] = path
    return logs


def run_to_end(cmd, env=None):
    """Runs cmd to its end under GNU time; returns (wall_s, cpu_s, peak_rss_kib).

    GNU time, not this process's own wait4: a child forked from Python starts with Python's
    resident pages, and the kernel keeps that high-water mark across exec."""
    report = os.path.join(WORK, "time.txt")
    t0 = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-o", report, "-f", "%U %S %M"] + cmd,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited with {p.returncode}")
    with open(report) as f:
        user, system, rss = f.read().split()[-3:]
    return wall, float(user) + float(system), int(rss)


def peak_rss_kib(pid):
    """The peak resident set of a running process since its exec (VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


class Receiver:
    """A TCP receiver on loopback that counts newline-terminated lines and bytes, and notes
    the time of the first and of the last byte."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        self.lines = 0
        self.bytes = 0
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
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn):
        with conn:
            while True:
                try:
                    b = conn.recv(1 << 20)
                except OSError:
                    return
                if not b:
                    return
                now = time.monotonic()
                with self.lock:
                    if self.first is None:
                        self.first = now
                    self.last = now
                    self.lines += b.count(b"\n")
                    self.bytes += len(b)

    def close(self):
        self.srv.close()


def run_to_socket(cmd_for_port, expect, env=None, timeout_s=600):
    """Starts the command with a fresh receiver, waits until the receiver has `expect` lines
    (or has had no byte for IDLE_END_S), stops the command; returns (span_s, cpu_s,
    peak_rss_kib, lines, bytes)."""
    rx = Receiver()
    p = subprocess.Popen(cmd_for_port(rx.port), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    t0 = time.monotonic()
    try:
        while True:
            time.sleep(0.1)
            with rx.lock:
                last, got = rx.last, rx.lines
            now = time.monotonic()
            if got >= expect or (last is not None and now - last > IDLE_END_S):
                rss = peak_rss_kib(p.pid)
                break
            if p.poll() is not None:
                raise RuntimeError(f"{cmd_for_port(0)[0]} exited early with {p.returncode}")
            if now - t0 > timeout_s:
                raise RuntimeError("nothing arrived in time")
    finally:
        if p.returncode is None:
            os.killpg(p.pid, signal.SIGTERM)
            _, _, ru = os.wait4(p.pid, 0)
            p.returncode = 0
        rx.close()
    return rx.last - rx.first, ru.ru_utime + ru.ru_stime, rss, rx.lines, rx.bytes


def isr_env(state):
    return dict(os.environ, STATE_DIRECTORY=state, METRICS_ENABLED="false",
                LOG_FORMAT="json", RUST_LOG="warn")


def fresh_dir(name):
    path = os.path.join(WORK, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def replay_tools(log):
    def isr():
        wall, cpu, rss = run_to_end([ISR, "replay", log], env=isr_env(fresh_dir("state")))
        return wall, cpu, rss

    def mtail():
        return run_to_end(["mtail", "--one_shot", "--progs", os.path.join(PEERS, "factorio.mtail"),
                           "--logs", log])

    return [("factorio-isr replay", isr), ("mtail --one_shot", mtail)]


def syslog_ng_expected(log):
    """How many lines syslog-ng's rules match (it forwards only those), counted once with
    Python's `re` on the same regexes and cached beside the log."""
    cache = log + ".syslog-ng-matches"
    if os.path.exists(cache):
        with open(cache) as f:
            return int(f.read())
    import re
    with open(os.path.join(PEERS, "syslog-ng.conf.in")) as f:
        conf = f.read()
    rules = [re.compile(r.replace("(?<", "(?P<").replace("\\\\", "\\"))
             for r in re.findall(r'^\s*"(\^.*)"\s*$', conf, re.M)]
    n = 0
    with open(log, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if any(r.search(line) for r in rules):
                n += 1
    with open(cache, "w") as f:
        f.write(str(n))
    return n


def isr_expected(log):
    """How many events factorio-isr sends: one per record, as `replay` writes them."""
    cache = log + ".isr-events"
    if os.path.exists(cache):
        with open(cache) as f:
            return int(f.read())
    out = subprocess.run([ISR, "replay", log], capture_output=True, check=True,
                         env=isr_env(fresh_dir("state"))).stdout
    n = out.count(b"\n")
    with open(cache, "w") as f:
        f.write(str(n))
    return n


def socket_tools(log):
    def isr():
        logdir = fresh_dir("isr-logs")
        os.link(log, os.path.join(logdir, "factorio-current.log"))
        # Throughput, not start-up: a new Logstash connection's first batch is held for
        # `probation_ms` (2 s by default) before the rest follows; set it to 0 here.
        config = os.path.join(WORK, "isr.toml")
        with open(config, "w") as f:
            f.write("[logstash]\nprobation_ms = 0\n")
        span, cpu, rss, lines, nbytes = run_to_socket(
            lambda port: [ISR, "run", "--config", config, "--from-beginning", "--logstash",
                          f"127.0.0.1:{port}", logdir], isr_expected(log),
            env=isr_env(fresh_dir("state")))
        return span, cpu, rss, lines, nbytes

    def syslog_ng():
        d = fresh_dir("syslog-ng")
        with open(os.path.join(PEERS, "syslog-ng.conf.in")) as f:
            template = f.read()

        def cmd(port):
            conf = os.path.join(d, "syslog-ng.conf")
            with open(conf, "w") as f:
                f.write(template.replace("@LOG@", log).replace("@PORT@", str(port)))
            return ["syslog-ng", "-F", "--no-caps", "-f", conf,
                    "-R", os.path.join(d, "persist"), "-p", os.path.join(d, "pid"),
                    "-c", os.path.join(d, "ctl")]

        return run_to_socket(cmd, syslog_ng_expected(log))

    return [("factorio-isr run -> socket", isr), ("syslog-ng -> socket", syslog_ng)]


def fmt_rss(kib):
    return f"{kib / 1024:.0f} MiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", choices=["heavy", "light"])
    ap.add_argument("--scenario", choices=["replay", "socket"])
    args = ap.parse_args()

    ensure_tools()
    logs = make_logs(args.lines, [args.only] if args.only else ["heavy", "light"])
    scenarios = [("replay", replay_tools), ("socket", socket_tools)]
    if args.scenario:
        scenarios = [s for s in scenarios if s[0] == args.scenario]

    print(f"# {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
          f"{args.lines} lines per log, median of {args.runs} alternating runs")
    for logname, log in logs.items():
        for scen, tools_of in scenarios:
            tools = tools_of(log)
            results = {name: [] for name, _ in tools}
            for r in range(args.runs):
                order = tools if r % 2 == 0 else list(reversed(tools))
                for name, fn in order:
                    res = fn()
                    results[name].append(res)
                    say(f"{logname} {scen} run {r + 1}: {name}: {res[0]:.2f} s, "
                        f"CPU {res[1]:.2f} s, {fmt_rss(res[2])}"
                        + (f", {res[3]} lines received" if len(res) > 3 else ""))
            print(f"\n## {logname} mix, {scen}")
            print("| tool | median time | CPU | CPU per line | peak RSS | lines/s | events out |")
            print("|---|---|---|---|---|---|---|")
            medians = {}
            for name, _ in tools:
                rs = results[name]
                t = statistics.median(x[0] for x in rs)
                cpu = statistics.median(x[1] for x in rs)
                rss = max(x[2] for x in rs)
                out = str(int(statistics.median(x[3] for x in rs))) if len(rs[0]) > 3 else "-"
                medians[name] = (t, cpu)
                print(f"| {name} | {t:.2f} s | {cpu:.2f} s | {cpu / args.lines * 1e6:.2f} µs "
                      f"| {fmt_rss(rss)} | {args.lines / t / 1e6:.2f} M | {out} |")
            (isr_name, _), (peer_name, _) = tools
            ti, ci = medians[isr_name]
            tp, cp = medians[peer_name]
            print(f"\nratio {peer_name} / {isr_name}: time {tp / ti:.1f}x, CPU {cp / ci:.1f}x")


if __name__ == "__main__":
    main()
