#!/usr/bin/env python3
"""factorio-isr against mtail and syslog-ng, on the same files, alternately, in one sitting.

    python3 benches/peers/compare.py [--lines 2000000] [--runs 5] [--only heavy|light]
                                     [--scenario replay|socket|patterns|latency ...]

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
   - `patterns` (heavy log only): `factorio-isr replay LOG` with the shipped patterns against
     `replay --patterns DIR`, DIR being the shipped files plus `--patterns N` (2000) ordinary
     user patterns that `genlog --patterns-dir DIR --patterns N` writes (kept under
     `target/peers/patterns-N/`; `--patterns-dir DIR` uses an existing one instead);
4. prints, per log and scenario, the median wall time, CPU time (user + system), peak RSS and
   lines per second of each tool, and the ratio of the peer's median to factorio-isr's (for
   `patterns`: the many-pattern run's share of the shipped set's throughput, and its RSS);
5. `latency`: starts `factorio-isr run` on an empty log (a config file with one server,
   `[logstash]` to a receiver on loopback, metrics off), appends `--rate` (10,000) chat lines
   per second for `--seconds` (20), each with its sequence number, in a batch every
   millisecond, and notes when each was written (after the write returned) and when its event
   arrived; prints the p50, p99, p99.9 and maximum latency and the lines lost (any loss makes
   the exit code 1). Then, with no writes for `--idle-seconds` (60), the CPU time the idle
   process used (utime + stime from /proc/PID/stat), as a share of one core.

Only what the chosen scenarios need is installed: `latency` needs neither mtail nor
syslog-ng. `--isr PATH` runs that factorio-isr binary instead of building the release one;
`--work DIR` puts the logs and scratch files there instead of `target/peers/`.

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
import json
import math
import multiprocessing
import re
from array import array

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEERS = os.path.join(ROOT, "benches", "peers")
WORK = os.path.join(ROOT, "target", "peers")
ISR = os.path.join(ROOT, "target", "release", "factorio-isr")
GENLOG = os.path.join(ROOT, "target", "release", "examples", "genlog")
# A run ends when the receiver has every line it should get, or after this long without a
# byte (then the table shows fewer lines than the others: a stall, not an end).
IDLE_END_S = 15.0


def say(*args):
    print(*args, file=sys.stderr, flush=True)


def ensure_tools(scenarios=("replay", "socket"), build_isr=True, need_genlog=True):
    needs = {"replay": [("mtail", "mtail"), ("/usr/bin/time", "time")],
             "socket": [("syslog-ng", "syslog-ng-core")],
             "patterns": [("/usr/bin/time", "time")]}
    wanted = []
    for scen in scenarios:
        for tool in needs.get(scen, []):
            if tool not in wanted:
                wanted.append(tool)
    missing = [pkg for cmd, pkg in wanted if shutil.which(cmd) is None]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        say("installing", " ".join(missing))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends"]
                       + missing, check=True, env=env)
    targets = (["--bin", "factorio-isr"] if build_isr else []) + \
        (["--example", "genlog"] if need_genlog else [])
    if targets:
        say("building", "factorio-isr" if build_isr else "genlog", "(release)")
        subprocess.run(["cargo", "build", "--release", "--quiet"] + targets, cwd=ROOT,
                       check=True)


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
                    cmd = [GENLOG, str(lines)]
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


def patterns_dir(count):
    """The shipped pattern files plus `count` ordinary user patterns, written once by `genlog
    --patterns-dir` and kept beside the logs."""
    path = os.path.join(WORK, f"patterns-{count}")
    if not os.path.exists(os.path.join(path, "custom.toml")):
        tmp = path + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([GENLOG, "--patterns-dir", tmp, "--patterns", str(count)], check=True)
        shutil.rmtree(path, ignore_errors=True)
        os.rename(tmp, path)
    return path


def patterns_tools(pdir, count):
    def tools(log):
        def shipped():
            return run_to_end([ISR, "replay", log], env=isr_env(fresh_dir("state")))

        def many():
            return run_to_end([ISR, "replay", "--patterns", pdir, log],
                              env=isr_env(fresh_dir("state")))

        return [("factorio-isr replay (shipped patterns)", shipped),
                (f"factorio-isr replay --patterns (shipped + {count})", many)]

    return tools


# The latency run: one chat line per sequence number, and the warm-up line that shows the
# pipeline is following the file before the measured lines start.
LATENCY_LINE = b"2026-11-30 12:00:00 [CHAT] bench: seq=%d\n"
WARMUP_LINE = b"2026-11-30 12:00:00 [CHAT] bench: warmup\n"
SEQ_MESSAGE = re.compile(r"seq=([0-9]+)")


def _receive_seqs(srv, arrived, counts, stop):
    """The receiver process: reads json_lines from every connection in turn, and notes for
    each sequence number the time (monotonic ns) its event's bytes came off the socket.
    counts: [events with a sequence, duplicates, warm-up events, lines that are not a chat
    event of this run]."""
    srv.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            continue
        except OSError:
            return
        conn.settimeout(0.2)
        pending = b""
        with conn:
            while not stop.is_set():
                try:
                    chunk = conn.recv(1 << 20)
                except socket.timeout:
                    continue
                except OSError:
                    break
                now = time.monotonic_ns()
                if not chunk:
                    break
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    try:
                        msg = json.loads(line)["fields"]["message"]
                    except (ValueError, KeyError, TypeError):
                        counts[3] += 1
                        continue
                    m = SEQ_MESSAGE.fullmatch(msg)
                    if m is None:
                        counts[2 if msg == "warmup" else 3] += 1
                        continue
                    seq = int(m.group(1))
                    if seq >= len(arrived):
                        counts[3] += 1
                    elif arrived[seq]:
                        counts[1] += 1
                    else:
                        arrived[seq] = now
                        counts[0] += 1


def cpu_ticks(pid):
    """utime + stime of a running process, in clock ticks (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def percentile(sorted_values, q):
    """The nearest-rank percentile q (0..1) of a sorted, non-empty list."""
    return sorted_values[max(0, min(len(sorted_values) - 1,
                                    math.ceil(q * len(sorted_values)) - 1))]


def latency_run(rate, seconds, idle_s):
    """Follows a live log with `factorio-isr run` into a receiver on loopback; returns a dict
    of what was measured (see the module's docs, step 5)."""
    d = fresh_dir("latency")
    logdir = os.path.join(d, "logs")
    state = os.path.join(d, "state")
    os.makedirs(logdir)
    os.makedirs(state)
    log = os.path.join(logdir, "factorio-current.log")
    open(log, "wb").close()
    total = int(rate * seconds)

    ctx = multiprocessing.get_context("fork")
    arrived = ctx.RawArray("q", total)
    counts = ctx.RawArray("q", 4)
    stop = ctx.Event()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    port = srv.getsockname()[1]
    rx = ctx.Process(target=_receive_seqs, args=(srv, arrived, counts, stop), daemon=True)
    rx.start()

    config = os.path.join(d, "isr.toml")
    with open(config, "w") as f:
        f.write(f"""[[servers]]
tag = "bench"
log_dir = {json.dumps(logdir)}

[tail]
state_dir = {json.dumps(state)}

[logstash]
address = "127.0.0.1:{port}"
# Latency of a live line, not of a new connection's one-time hold of its first batch.
probation_ms = 0

[metrics]
enabled = false
""")
    stderr = open(os.path.join(d, "factorio-isr.stderr"), "wb")
    p = subprocess.Popen([ISR, "run", "--config", config], stdout=subprocess.DEVNULL,
                         stderr=stderr, env=isr_env(state), start_new_session=True)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    result = {}
    try:
        # Warm-up: the file is followed from its end, so lines written before factorio-isr
        # looks at it are (rightly) skipped; write one every 50 ms until one arrives.
        t0 = time.monotonic()
        while counts[2] == 0:
            if p.poll() is not None:
                raise RuntimeError(f"factorio-isr run exited with {p.returncode}; "
                                   f"see {stderr.name}")
            if time.monotonic() - t0 > 60:
                raise RuntimeError(f"no event arrived within 60 s; see {stderr.name}")
            os.write(fd, WARMUP_LINE)
            time.sleep(0.05)

        written = array("q", bytes(8 * total))
        ticks0 = cpu_ticks(p.pid)
        start = time.monotonic_ns()
        next_tick = start
        seq = 0
        while seq < total:
            now = time.monotonic_ns()
            due = min(total, (now - start) * rate // 1_000_000_000 + 1)
            if due > seq:
                data = b"".join(LATENCY_LINE % i for i in range(seq, due))
                while data:
                    data = data[os.write(fd, data):]
                t = time.monotonic_ns()
                for i in range(seq, due):
                    written[i] = t
                seq = due
            next_tick = max(next_tick + 1_000_000, now)
            delay = next_tick - time.monotonic_ns()
            if delay > 0:
                time.sleep(delay / 1e9)
        write_s = (time.monotonic_ns() - start) / 1e9

        # Every line, or IDLE_END_S without a new one.
        last_got, last_change = -1, time.monotonic()
        while counts[0] < total and time.monotonic() - last_change < IDLE_END_S:
            if counts[0] != last_got:
                last_got, last_change = counts[0], time.monotonic()
            if p.poll() is not None:
                raise RuntimeError(f"factorio-isr run exited with {p.returncode}; "
                                   f"see {stderr.name}")
            time.sleep(0.05)
        busy_ticks = cpu_ticks(p.pid) - ticks0
        busy_s = (time.monotonic_ns() - start) / 1e9

        idle_ticks0 = cpu_ticks(p.pid)
        idle_t0 = time.monotonic()
        time.sleep(idle_s)
        idle_ticks = cpu_ticks(p.pid) - idle_ticks0
        idle_wall = time.monotonic() - idle_t0
        if p.poll() is not None:
            raise RuntimeError(f"factorio-isr run exited with {p.returncode} while idle; "
                               f"see {stderr.name}")
        rss = peak_rss_kib(p.pid)

        lat = sorted(arrived[i] - written[i] for i in range(total) if arrived[i])
        hz = os.sysconf("SC_CLK_TCK")
        result = dict(total=total, got=counts[0], dups=counts[1], other=counts[3],
                      write_s=write_s, lat_ms=[x / 1e6 for x in lat],
                      busy_cpu_s=busy_ticks / hz, busy_s=busy_s,
                      idle_cpu_s=idle_ticks / hz, idle_s=idle_wall, rss=rss)
    finally:
        os.close(fd)
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        stop.set()
        rx.join(5)
        srv.close()
        stderr.close()
    return result


def print_latency(r, rate, seconds):
    name = "factorio-isr run -> socket"
    lost = r["total"] - r["got"]
    print(f"\n## live lines, write -> socket, {rate} lines/s for {seconds:g} s")
    print("| tool | lines written | lines lost | p50 | p99 | p99.9 | max "
          "| CPU (of one core) | peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    lat = r["lat_ms"]
    cells = [f"{percentile(lat, q):.2f} ms" for q in (0.5, 0.99, 0.999)] + \
        [f"{lat[-1]:.2f} ms"] if lat else ["-"] * 4
    print(f"| {name} | {r['total']} | {lost} | " + " | ".join(cells)
          + f" | {r['busy_cpu_s']:.2f} s ({100 * r['busy_cpu_s'] / r['busy_s']:.1f} %) "
          f"| {fmt_rss(r['rss'])} |")
    if r["write_s"] > seconds * 1.1:
        print(f"\nthe writer fell behind: {r['total']} lines took {r['write_s']:.1f} s")
    if r["dups"] or r["other"]:
        print(f"\n{r['dups']} events arrived twice, {r['other']} lines were not this run's")
    print("\ntarget: p99 <= 5 ms, 0 lines lost")
    print(f"\n## idle, no writes for {r['idle_s']:.0f} s")
    print("| tool | CPU | of one core |")
    print("|---|---|---|")
    print(f"| factorio-isr run | {r['idle_cpu_s']:.2f} s "
          f"| {100 * r['idle_cpu_s'] / r['idle_s']:.2f} % |")
    print("\ntarget: idle CPU < 1 % of one core")
    return lost


def fmt_rss(kib):
    return f"{kib / 1024:.0f} MiB"


def main():
    global WORK, ISR
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", choices=["heavy", "light"])
    ap.add_argument("--scenario", action="append",
                    choices=["replay", "socket", "patterns", "latency"],
                    help="run only this scenario (may be given more than once; default: all)")
    ap.add_argument("--patterns", type=int, default=2000, metavar="N",
                    help="patterns: ordinary user patterns added to the shipped ones")
    ap.add_argument("--patterns-dir", metavar="DIR",
                    help="patterns: use this patterns directory instead of writing one")
    ap.add_argument("--rate", type=int, default=10_000, help="latency: lines per second")
    ap.add_argument("--seconds", type=float, default=20.0, help="latency: how long to write")
    ap.add_argument("--idle-seconds", type=float, default=60.0,
                    help="latency: how long to measure the idle process")
    ap.add_argument("--isr", metavar="PATH", help="the factorio-isr binary (default: build "
                    "and use the release one)")
    ap.add_argument("--work", metavar="DIR", help="logs and scratch files (default: "
                    "target/peers)")
    args = ap.parse_args()
    if args.work:
        WORK = os.path.abspath(args.work)
    if args.isr:
        ISR = os.path.abspath(args.isr)
    if args.patterns_dir:
        args.patterns_dir = os.path.abspath(args.patterns_dir)

    chosen = args.scenario or ["replay", "socket", "patterns", "latency"]
    if chosen == ["patterns"] and args.only == "light":
        ap.error("the patterns scenario runs on the heavy log only")
    lognames = [args.only] if args.only else ["heavy", "light"]
    if not any(c in chosen for c in ("replay", "socket")):
        lognames = [n for n in lognames if n == "heavy"] if "patterns" in chosen else []
    need_genlog = "light" in lognames or ("patterns" in chosen and not args.patterns_dir)
    ensure_tools(chosen, build_isr=not args.isr, need_genlog=need_genlog)
    logs = make_logs(args.lines, lognames)
    scenarios = [("replay", replay_tools), ("socket", socket_tools)]
    if "patterns" in chosen:
        pdir = args.patterns_dir or patterns_dir(args.patterns)
        scenarios.append(("patterns", patterns_tools(pdir, args.patterns)))
    scenarios = [s for s in scenarios if s[0] in chosen]

    print(f"# {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores"
          + (f", {args.lines} lines per log, median of {args.runs} alternating runs"
             if logs else ""))
    for logname, log in logs.items():
        for scen, tools_of in scenarios:
            if scen == "patterns" and logname != "heavy":
                continue
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
                medians[name] = (t, cpu, rss)
                print(f"| {name} | {t:.2f} s | {cpu:.2f} s | {cpu / args.lines * 1e6:.2f} µs "
                      f"| {fmt_rss(rss)} | {args.lines / t / 1e6:.2f} M | {out} |")
            (isr_name, _), (peer_name, _) = tools
            ti, ci, _ = medians[isr_name]
            tp, cp, rp = medians[peer_name]
            if scen == "patterns":
                print(f"\nratio {peer_name} / {isr_name}: throughput {100 * ti / tp:.0f} % "
                      f"(target >= 50 %), CPU {cp / ci:.1f}x, peak RSS {fmt_rss(rp)} "
                      f"(target <= 64 MiB)")
            else:
                print(f"\nratio {peer_name} / {isr_name}: time {tp / ti:.1f}x, "
                      f"CPU {cp / ci:.1f}x")
    lost = 0
    if "latency" in chosen:
        say(f"latency: {args.rate} lines/s for {args.seconds:g} s, "
            f"then {args.idle_seconds:g} s idle")
        r = latency_run(args.rate, args.seconds, args.idle_seconds)
        lost = print_latency(r, args.rate, args.seconds)
    sys.stdout.flush()
    if lost:
        say(f"{lost} lines written were never received")
        sys.exit(1)


if __name__ == "__main__":
    main()
