#!/usr/bin/env python3
"""Blaze side by side with peer WebSocket servers, measured by blaze-bench.

Run through scripts/bench.sh (which builds everything first), or directly:

    python3 bench/compare.py [--quick] [--reps N] [--servers a,b] [--scenarios x,y]
                             [--no-md] [--keep-cc] [--results DIR] [--set deflate]

`--set deflate` runs the permessage-deflate scenarios instead (Blaze plain,
deflate shared and deflate dedicated, plus any `--extra` peers, e.g. one
whose name contains "shared"/"dedicated"/"plain"): fan-out of 1 KiB JSON to
10,000 subscribers, echo of JSON at 32 B / 1 KiB / 64 KiB, idle memory after
one message each. It writes bench/results/raw-deflate.jsonl and prints the
tables; it never touches BENCHMARKS.md (the deflate section there is
written by hand from them).

For every scenario, repetition and server it starts a FRESH server process
pinned to core 0 (`taskset -c 0`, open-file limit 20000), waits until its
port listens, runs blaze-bench pinned to core 1 with `--pid` of the server
and a timeout, then kills the server. Only 127.0.0.1 is targeted.

Loopback TCP congestion control is switched to cubic for the run (bbr paces
sends and hides differences) and the previous value is restored at the end,
on failure and on Ctrl-C / SIGTERM too.

Writes bench/results/raw.jsonl (every run), bench/results/chart.svg, and
the section "Servers side by side (scripts/bench.sh)" of BENCHMARKS.md
(medians). `--quick` (short runs, 1 repetition) writes *-quick files and
leaves BENCHMARKS.md alone unless --md is given.

Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import html
import json
import os
import platform
import shutil
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"
PEERS = ROOT / "bench" / "peers" / "target" / "release"
BUN_PEER = ROOT / "bench" / "peers" / "bun"
BLAZE_BENCH = RELEASE / "blaze-bench"
CC_PATH = Path("/proc/sys/net/ipv4/tcp_congestion_control")
SECTION = "## Servers side by side (scripts/bench.sh)"
FD_LIMIT = 20000
SERVER_CORE, CLIENT_CORE = "0", "1"
HOST = "127.0.0.1"
PORT_BASE, PORT_SPAN = 19000, 900  # below the ephemeral range (32768-60999)

# name, argv (after the binary's path), binary, reference peer?
SERVERS = [
    ("blaze (tokio)", RELEASE / "echo", ["--runtime", "tokio"]),
    ("blaze (async-std)", RELEASE / "echo", ["--runtime", "async-std"]),
    ("tokio-tungstenite", PEERS / "tungstenite-peer", []),
    ("fastwebsockets", PEERS / "fastwebsockets-peer", []),
    ("axum", PEERS / "axum-peer", []),
    # uWebSockets as Bun embeds it (Bun.serve + server.publish); scripts/bench.sh installs it from npm.
    ("bun (uWebSockets)", BUN_PEER / "node_modules" / ".bin" / "bun", [str(BUN_PEER / "server.js")]),
]
UWS = "bun (uWebSockets)"
OPTIONAL = {"axum", UWS}

# `--set deflate`: the Blaze echo example in its three modes.
DEFLATE_SERVERS = [
    ("blaze plain", RELEASE / "echo", ["--runtime", "tokio"]),
    ("blaze shared", RELEASE / "echo", ["--runtime", "tokio", "--deflate", "shared"]),
    ("blaze dedicated", RELEASE / "echo", ["--runtime", "tokio", "--deflate", "dedicated"]),
]


def client_deflate(server: str) -> str:
    """What blaze-bench offers to a server in the deflate set, from its name."""
    if "plain" in server:
        return "off"
    if "dedicated" in server or "python" in server:
        return "dedicated"
    return "shared"


def deflate_scenarios(quick: bool) -> list[dict]:
    secs = 3 if quick else 5
    msgs = "20" if quick else "100"
    echo_servers = ["blaze shared", "blaze dedicated", "python", "uWS shared", "uWS dedicated"]
    def echo(key, size, conns, window, label):
        return dict(key=key, title=f"Echo with permessage-deflate: {conns} connections × {label} JSON, window {window}, {secs} s",
                    path="/echo", args=["echo", "--conns", str(conns), "--size", str(size), "--window", str(window), "--secs", str(secs), "--payload", "json"],
                    metric="msgs_per_s", unit="msgs/s", op="message", higher=True, timeout=secs + 60, servers=echo_servers)
    return [
        dict(key="fanout-10k-json1k", title=f"Fan-out: 10,000 subscribers × {msgs} JSON messages of 1 KiB",
             path="/broadcast", args=["fanout", "--subs", "10000", "--msgs", msgs, "--size", "1024", "--payload", "json", "--timeout", "90"],
             metric="deliveries_per_s", unit="deliveries/s", op="delivery", higher=True, timeout=200,
             servers=["blaze plain", "blaze shared", "uWS plain", "uWS shared"]),
        echo("echo-json32", 32, 100, 16, "32 B"),
        echo("echo-json1k", 1024, 100, 16, "1 KiB"),
        echo("echo-json64k", 65536, 10, 4, "64 KiB"),
        dict(key="idle-deflate", title="Idle: 10,000 connections, one 256 B JSON message echoed on each, then held 3 s",
             path="/idle", args=["idle", "--conns", "10000", "--hold", "1" if quick else "3", "--messages", "1", "--size", "256", "--payload", "json"],
             metric="kib_per_conn", unit="KiB/conn (server RSS)", op="connection", higher=False, timeout=200,
             servers=["blaze plain", "blaze shared", "blaze dedicated"]),
    ]


def runs_in(sc: dict, server: str) -> bool:
    return "servers" not in sc or any(m in server for m in sc["servers"])


def deflate_tables(summary: dict, rows: list[dict], scs: list[dict], servers: list[str]) -> str:
    md = []
    for sc in scs:
        names = [n for n in servers if runs_in(sc, n)]
        md.append(f"#### {sc['title']}\n")
        md.append(f"| server | client offers | agreed | {sc['unit']} (median, min–max) | server CPU µs/{sc['op']} | wire ÷ payload, client→server | wire ÷ payload, server→client | server / load tool core use |")
        md.append("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for name in names:
            s = summary[(sc["key"], name)]
            good = [r["result"] for r in rows if r["scenario_key"] == sc["key"] and r["server"] == name and r["ok"] and r["result"]]
            if not good:
                md.append(f"| {name} | {client_deflate(name)} | | failed ({'; '.join(sorted(set(s['errors'])))[:160]}) | | | | |")
                continue
            up = median([float(r["ratio_up"]) for r in good if "ratio_up" in r])
            down = median([float(r["ratio_down"]) for r in good if "ratio_down" in r])
            agreed = "; ".join(sorted({str(r.get("deflate_negotiated", "?")) for r in good})).replace("permessage-deflate", "pmd")
            note = "" if s["good"] == s["runs"] else f" ({s['runs'] - s['good']} of {s['runs']} runs failed)"
            md.append(
                f"| {name}{note} | {client_deflate(name)} | {agreed} | {fmt_num(s['value'], sc['unit'])} ({fmt_num(s['lo'], sc['unit'])}–{fmt_num(s['hi'], sc['unit'])}) "
                f"| {fmt_num(s['cpu'], 'µs') if s['cpu'] is not None else '—'} | {'—' if up is None else f'{up:.3f}'} | {'—' if down is None else f'{down:.3f}'} "
                f"| {pct(s['util'])} / {pct(s['cutil'])} |"
            )
        md.append("")
    return "\n".join(md)


def scenarios(quick: bool) -> list[dict]:
    secs = 3 if quick else 10
    hold = 1 if quick else 3
    return [
        dict(key="echo-small", title=f"Echo: 100 connections × 32 B, window 16, {secs} s",
             path="/echo", args=["echo", "--conns", "100", "--size", "32", "--window", "16", "--secs", str(secs)],
             metric="msgs_per_s", unit="msgs/s", op="message", higher=True, timeout=secs + 60),
        dict(key="echo-64k", title=f"Echo: 10 connections × 64 KiB, window 4, {secs} s",
             path="/echo", args=["echo", "--conns", "10", "--size", "65536", "--window", "4", "--secs", str(secs)],
             metric="msgs_per_s", unit="msgs/s", op="message", higher=True, timeout=secs + 60),
        dict(key="fanout-1k", title="Fan-out: 1,000 subscribers × " + ("200" if quick else "1,000") + " messages of 32 B",
             path="/broadcast", args=["fanout", "--subs", "1000", "--msgs", "200" if quick else "1000", "--timeout", "60"],
             metric="deliveries_per_s", unit="deliveries/s", op="delivery", higher=True, timeout=150),
        dict(key="fanout-10k", title="Fan-out: 10,000 subscribers × " + ("20" if quick else "100") + " messages of 32 B",
             path="/broadcast", args=["fanout", "--subs", "10000", "--msgs", "20" if quick else "100", "--timeout", "60"],
             metric="deliveries_per_s", unit="deliveries/s", op="delivery", higher=True, timeout=180),
        dict(key="idle", title=f"Idle: 10,000 connections held {hold} s",
             path="/idle", args=["idle", "--conns", "10000", "--hold", str(hold)],
             metric="kib_per_conn", unit="KiB/conn (server RSS)", op="connection (handshake)", higher=False, timeout=180),
        dict(key="connect-rate", title=f"Connect rate: 1,000 concurrent connectors, {secs // 2} s",
             path="/echo", args=["connect-rate", "--concurrency", "1000", "--secs", str(secs // 2)],
             metric="handshakes_per_s", unit="handshakes/s", op="handshake", higher=True, timeout=secs + 60),
        # Latency at a fixed offered load well below either server's maximum
        # (echo 32 B peaks at ~300k msgs/s here, fan-out at ~1M deliveries/s).
        dict(key="echo-latency", title=f"Echo round trip at a fixed load: 100 connections × 500 msgs/s (50k msgs/s), 32 B, {secs} s",
             path="/echo", args=["echo", "--conns", "100", "--size", "32", "--rate", "500", "--secs", str(secs)],
             metric="rtt.p99_us", unit="µs p99 round trip", op="message", higher=False, timeout=secs + 60),
        dict(key="fanout-latency", title="Fan-out delivery latency at a fixed load: 1,000 subscribers × 100 broadcasts/s (100k deliveries/s), 32 B",
             path="/broadcast", args=["fanout", "--subs", "1000", "--msgs", "100" if quick else "500", "--rate", "100", "--timeout", "60"],
             metric="latency.p99_us", unit="µs p99 delivery", op="delivery", higher=False, timeout=150),
        # Many publishers (Bun's bench/websocket-server shape): every client
        # sends, then waits for the round's message from every other.
        dict(key="chat-32", title="Many publishers: 32 clients, each round every client sends 32 B and waits for all 32",
             path="/broadcast", args=["chat", "--clients", "32", "--rounds", "200" if quick else "1000"],
             metric="deliveries_per_s", unit="deliveries/s", op="delivery", higher=True, timeout=150),
        # Rooms need the contract's /room/NAME: the Blaze echo example and the Bun peer.
        # 2 msgs/s: at 5 (500k deliveries/s) both Blaze and Bun used ~all of their core, and so did the load tool.
        dict(key="chat-rooms", title=f"Chat rooms: 1,000 clients in 10 rooms, each sends 2 msgs/s (200k deliveries/s), 32 B, {secs} s",
             path="/room", args=["chat", "--clients", "1000", "--rooms", "10", "--rate", "2", "--secs", str(secs)],
             metric="latency.p99_us", unit="µs p99 delivery", op="delivery", higher=False, timeout=secs + 90,
             servers=["blaze", UWS]),
    ]


def scale_scenarios(quick: bool) -> list[dict]:
    """`--set scale`: fan-out CPU per delivery as the audience grows (the
    open-file limit here is 20,000, so 19,000 is the top)."""
    out = []
    for subs in (1000, 5000, 10000, 19000):
        msgs = max(10 if quick else 50, 1_000_000 // subs // (5 if quick else 1))
        out.append(dict(key=f"fanout-{subs // 1000}k", title=f"Fan-out: {subs:,} subscribers × {msgs} messages of 32 B",
                        path="/broadcast", args=["fanout", "--subs", str(subs), "--msgs", str(msgs), "--timeout", "90"],
                        metric="deliveries_per_s", unit="deliveries/s", op="delivery", higher=True, timeout=240,
                        servers=["blaze (tokio)", UWS]))
    return out


# --------------------------------------------------------------------------
# Processes


class Run:
    """State that the cleanup must see: the live server, the saved cc."""

    server: subprocess.Popen | None = None
    saved_cc: str | None = None


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def listening(port: int) -> bool:
    """Is something listening on 127.0.0.1:port? (From /proc, no connection made.)"""
    want = f"{socket.htonl(0x7F000001):08X}:{port:04X}"
    any_ = f"00000000:{port:04X}"
    try:
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[1] in (want, any_):
                return True
    except OSError:
        pass
    return False


def server_command(binary: Path, extra: list[str], port: int) -> list[str]:
    inner = " ".join([f"ulimit -n {FD_LIMIT};", "exec taskset -c", SERVER_CORE, str(binary), *extra, "--addr", f"{HOST}:{port}"])
    return ["bash", "-c", inner]


def start_server(binary: Path, extra: list[str], port: int, logf) -> subprocess.Popen:
    cmd = server_command(binary, extra, port)
    logf.write(f"\n=== {' '.join(cmd)}\n")
    logf.flush()
    env = dict(os.environ, RUST_LOG="warn")
    proc = subprocess.Popen(cmd, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    Run.server = proc
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {' '.join(cmd)}")
        if listening(port):
            # bash exec'd taskset, which exec'd the server: the pid is the server's.
            return proc
        time.sleep(0.05)
    stop_server(proc)
    raise RuntimeError(f"server did not listen on {port} within 15 s")


def stop_server(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        Run.server = None
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    Run.server = None


def bench_command(sc: dict, port: int, pid: int | str, bench: Path = BLAZE_BENCH) -> list[str]:
    return ["taskset", "-c", CLIENT_CORE, str(bench), *sc["args"], "--url", f"ws://{HOST}:{port}{sc['path']}", "--pid", str(pid)]


def run_bench(sc: dict, port: int, pid: int, logf, bench: Path) -> tuple[dict | None, str]:
    cmd = bench_command(sc, port, pid, bench)
    logf.write(f"\n=== {' '.join(cmd)}\n")
    logf.flush()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=sc["timeout"], stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        logf.write(f"TIMEOUT after {sc['timeout']} s\n{e.stdout or ''}{e.stderr or ''}\n")
        return None, f"timeout after {sc['timeout']} s"
    logf.write(out.stdout + out.stderr[-4000:])
    logf.flush()
    result = None
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except json.JSONDecodeError:
                pass
            break
    err = "" if out.returncode == 0 else (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
    return result, err


# --------------------------------------------------------------------------
# Congestion control


def set_cc(value: str) -> None:
    CC_PATH.write_text(value + "\n")


def restore_cc() -> None:
    if Run.saved_cc is not None:
        try:
            set_cc(Run.saved_cc)
            log(f"congestion control restored to {Run.saved_cc}")
        except OSError as e:
            print(f"WARNING: could not restore tcp_congestion_control={Run.saved_cc}: {e}", file=sys.stderr)
        Run.saved_cc = None


def on_sigterm(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt(f"signal {signum}")


# --------------------------------------------------------------------------
# Machine facts


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kib / 1048576:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return dict(nproc=os.cpu_count(), cpu=model, mem=mem, kernel=platform.release())


def load_snapshot() -> str:
    la = " ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        ps = subprocess.run(["ps", "-eo", "pcpu,comm", "--sort=-pcpu", "--no-headers"], capture_output=True, text=True, timeout=5).stdout
        busy = [l.split(None, 1) for l in ps.splitlines()[:6]]
        busy = ", ".join(f"{c.strip()} {p}%" for p, c in busy if float(p) >= 5.0)
    except (OSError, subprocess.SubprocessError, ValueError):
        busy = ""
    return f"load average {la}" + (f"; busy processes (ps %CPU over their lifetime): {busy}" if busy else "")


# --------------------------------------------------------------------------
# Summaries


def metric_of(result: dict, metric: str):
    """A field of blaze-bench's JSON line; `rtt.p99_us` reaches into an object."""
    value = result
    for part in metric.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summarize(rows: list[dict], scs: list[dict], servers: list[str]) -> dict:
    """(scenario, server) -> medians over the successful repetitions."""
    out = {}
    for sc in scs:
        for name in servers:
            runs = [r for r in rows if r["scenario_key"] == sc["key"] and r["server"] == name]
            good = [r for r in runs if r["ok"] and r["result"]]
            vals = [float(metric_of(r["result"], sc["metric"]) or 0.0) for r in good]
            cpu = [float(r["result"]["server_cpu_us_per_op"]) for r in good if "server_cpu_us_per_op" in r["result"]]
            sat = sum(1 for r in good if r["result"].get("client_saturated"))
            util = [float(r["result"]["server_cpu_util"]) for r in good if "server_cpu_util" in r["result"]]
            cutil = [float(r["result"]["client_cpu_util"]) for r in good if "client_cpu_util" in r["result"]]
            out[(sc["key"], name)] = dict(
                value=median(vals), lo=min(vals) if vals else None, hi=max(vals) if vals else None,
                cpu=median(cpu), util=median(util), cutil=median(cutil), saturated=sat, good=len(good), runs=len(runs),
                errors=[r["error"] for r in runs if not r["ok"]],
            )
    return out


def fmt_num(x: float | None, unit: str) -> str:
    if x is None:
        return "—"
    if "KiB" in unit:
        return f"{x:.2f}"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}×"


def pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.0f}%"


def tables(summary: dict, scs: list[dict], servers: list[str]) -> str:
    fws, tung = "fastwebsockets", "tokio-tungstenite"
    md = []
    for sc in scs:
        better = "higher is better" if sc["higher"] else "lower is better"
        md.append(f"#### {sc['title']}\n")
        md.append(f"Median of the repetitions; {sc['unit']}, {better}. Server CPU is µs of the pinned server's CPU per {sc['op']}; core use is CPU time ÷ wall time of the server and of blaze-bench (each on its own core).\n")
        md.append(f"| server | {sc['unit']} (median) | min–max | server CPU µs/{sc['op'].split()[0]} | server / load tool core use | load tool saturated | ÷ fastwebsockets | ÷ tokio-tungstenite | ÷ uWebSockets (Bun) | CPU/op ÷ fastwebsockets | CPU/op ÷ tokio-tungstenite | CPU/op ÷ uWebSockets (Bun) |")
        md.append("| --- | ---: | ---: | ---: | ---: | :---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        ref_f = summary.get((sc["key"], fws), {})
        ref_t = summary.get((sc["key"], tung), {})
        ref_u = summary.get((sc["key"], UWS), {})
        for name in servers:
            s = summary[(sc["key"], name)]
            if not runs_in(sc, name):
                md.append(f"| {name} | not run in this scenario | | | | | | | | | | |")
                continue
            if s["good"] == 0:
                md.append(f"| {name} | failed ({'; '.join(sorted(set(s['errors'])))[:120]}) | | | | | | | | | | |")
                continue
            sat = "no" if s["saturated"] == 0 else f"yes ({s['saturated']}/{s['good']})"
            note = "" if s["good"] == s["runs"] else f" ({s['runs'] - s['good']} of {s['runs']} runs failed)"
            md.append(
                f"| {name}{note} | {fmt_num(s['value'], sc['unit'])} | {fmt_num(s['lo'], sc['unit'])}–{fmt_num(s['hi'], sc['unit'])} "
                f"| {fmt_num(s['cpu'], 'µs') if s['cpu'] is not None else '—'} | {pct(s['util'])} / {pct(s['cutil'])} | {sat} "
                f"| {ratio(s['value'], ref_f.get('value'))} | {ratio(s['value'], ref_t.get('value'))} | {ratio(s['value'], ref_u.get('value'))} "
                f"| {ratio(s['cpu'], ref_f.get('cpu'))} | {ratio(s['cpu'], ref_t.get('cpu'))} | {ratio(s['cpu'], ref_u.get('cpu'))} |"
            )
        md.append("")
    return "\n".join(md)


def targets(summary: dict) -> str:
    def get(key, name, field="value"):
        return summary.get((key, name), {}).get(field)

    lines = ["| target | blaze (tokio) | blaze (async-std) |", "| --- | --- | --- |"]

    def check(desc, fn):
        cells = []
        for name in ("blaze (tokio)", "blaze (async-std)"):
            try:
                cells.append(fn(name))
            except (TypeError, ZeroDivisionError):
                cells.append("no data")
        lines.append(f"| {desc} | {cells[0]} | {cells[1]} |")

    def echo_small(n):
        r = get("echo-small", n) / get("echo-small", "fastwebsockets")
        c = get("echo-small", n, "cpu") / get("echo-small", "fastwebsockets", "cpu")
        met = r >= 5 or c <= 0.2
        return f"{'**met**' if met else '**not met**'}: {r:.2f}× msgs/s, {c:.3f}× CPU/msg"

    def echo_big(n):
        r = get("echo-64k", n) / get("echo-64k", "fastwebsockets")
        c = get("echo-64k", n, "cpu") / get("echo-64k", "fastwebsockets", "cpu")
        return f"{'**met**' if r >= 1.0 else '**not met**'}: {r:.2f}× msgs/s ({c:.2f}× CPU/msg)"

    def fan(n):
        r = get("fanout-10k", n) / get("fanout-10k", "tokio-tungstenite")
        c = get("fanout-10k", n, "cpu") / get("fanout-10k", "tokio-tungstenite", "cpu")
        return f"{'**met**' if r >= 10 else '**not met**'}: {r:.2f}× deliveries/s ({c:.2f}× CPU/delivery)"

    def idle(n):
        k = get("idle", n)
        return f"{'**met**' if k <= 1.0 else '**not met**'}: {k:.2f} KiB/conn"

    check("echo 32 B ≥ 5× fastwebsockets msgs/s (or ≤ 1/5 its CPU per message)", echo_small)
    check("echo 64 KiB ≥ 1.0× fastwebsockets msgs/s", echo_big)
    check("fan-out 10,000 subs ≥ 10× tokio-tungstenite deliveries/s", fan)
    check("idle ≤ 1 KiB server RSS per connection", idle)

    # Issue 13: level with uWebSockets (as Bun embeds it), then past it.
    def vs_uws(key, what, higher):
        def fn(n):
            if higher:
                c = get(key, n, "cpu") / get(key, UWS, "cpu")
                r = get(key, n) / get(key, UWS)
                return f"{'**met**' if r >= 1.0 and c <= 1.0 else '**not met**'}: {r:.2f}× {what}, {c:.3f}× CPU/op"
            r = get(key, n) / get(key, UWS)
            return f"{'**met**' if r <= 1.0 else '**not met**'}: {r:.2f}× {what}"
        return fn

    check("echo 32 B: CPU/msg ≤ uWebSockets (Bun), msgs/s ≥", vs_uws("echo-small", "msgs/s", True))
    check("fan-out 10,000 subs: deliveries/s and CPU/delivery level with uWebSockets (Bun)", vs_uws("fanout-10k", "deliveries/s", True))
    check("fan-out 1,000 subs: ahead of uWebSockets (Bun)", vs_uws("fanout-1k", "deliveries/s", True))
    check("idle memory ≤ uWebSockets (Bun)", vs_uws("idle", "KiB/conn", False))
    check("connect rate ≥ uWebSockets (Bun)", vs_uws("connect-rate", "handshakes/s", True))
    check("echo round trip p99 at a fixed load ≤ uWebSockets (Bun)", vs_uws("echo-latency", "p99", False))
    check("fan-out delivery p99 at a fixed load ≤ uWebSockets (Bun)", vs_uws("fanout-latency", "p99", False))
    check("many publishers (32 clients): deliveries/s ≥ uWebSockets (Bun), CPU/delivery ≤", vs_uws("chat-32", "deliveries/s", True))
    check("chat rooms at a fixed load: delivery p99 ≤ uWebSockets (Bun)", vs_uws("chat-rooms", "p99", False))
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Chart: hand-built SVG, one panel of horizontal bars per scenario.

PALETTE = {
    "blaze (tokio)": "#d9480f",
    "blaze (async-std)": "#f08c00",
    "tokio-tungstenite": "#1971c2",
    "fastwebsockets": "#2f9e44",
    "axum": "#7048e8",
    "bun (uWebSockets)": "#495057",
}


def chart(summary: dict, scs: list[dict], servers: list[str], subtitle: str) -> str:
    """Per scenario, two bar panels side by side: the scenario's figure, and
    the server's CPU per operation (the steadier figure on a shared machine)."""
    width, label_w, bar_h, gap = 1160, 150, 20, 5
    col_w = (width - label_w - 30) // 2
    plot_w = col_w - 150  # room for the value text
    y = 64
    parts = []

    def panel(x0, y0, items, unit, higher, caption):
        top = max([hi or v or 0 for v, lo, hi, _ in items] + [1e-9])
        out = [f'<text x="{x0}" y="{y0 - 6}" class="s">{html.escape(caption)} ({"higher" if higher else "lower"} is better)</text>']
        yy = y0
        for v, lo, hi, color in items:
            if v is None:
                out.append(f'<text x="{x0 + 4}" y="{yy + bar_h * 0.72:.1f}" class="v">failed</text>')
            else:
                w = max(1.0, plot_w * v / top)
                out.append(f'<rect x="{x0}" y="{yy}" width="{w:.1f}" height="{bar_h}" fill="{color}" rx="2"/>')
                end = x0 + w
                if lo is not None and hi is not None and hi > lo:
                    a, b, cy = x0 + plot_w * lo / top, x0 + plot_w * hi / top, yy + bar_h / 2
                    out.append(f'<line x1="{a:.1f}" y1="{cy}" x2="{b:.1f}" y2="{cy}" class="w"/>')
                    out.append(f'<line x1="{a:.1f}" y1="{cy - 5}" x2="{a:.1f}" y2="{cy + 5}" class="w"/>')
                    out.append(f'<line x1="{b:.1f}" y1="{cy - 5}" x2="{b:.1f}" y2="{cy + 5}" class="w"/>')
                    end = max(end, b)
                out.append(f'<text x="{end + 6:.1f}" y="{yy + bar_h * 0.72:.1f}" class="v">{html.escape(fmt_num(v, unit))}</text>')
            yy += bar_h + gap
        return out

    for sc in scs:
        vals = [summary[(sc["key"], n)] for n in servers]
        colors = [PALETTE.get(n, "#868e96") for n in servers]
        parts.append(f'<text x="10" y="{y + 16}" class="h">{html.escape(sc["title"])}</text>')
        y += 44
        for i, name in enumerate(servers):
            parts.append(f'<text x="{label_w - 8}" y="{y + i * (bar_h + gap) + bar_h * 0.72:.1f}" class="l" text-anchor="end">{html.escape(name)}</text>')
        parts += panel(label_w, y, [(v["value"], v["lo"], v["hi"], c) for v, c in zip(vals, colors)], sc["unit"], sc["higher"],
                       f"{sc['unit']}, median; whisker min–max")
        parts += panel(label_w + col_w + 20, y, [(v["cpu"], None, None, c) for v, c in zip(vals, colors)], "µs", False,
                       f"server CPU µs per {sc['op']}, median")
        y += len(servers) * (bar_h + gap) + 22
    height = y + 6
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'font-family="DejaVu Sans, Helvetica, Arial, sans-serif">\n'
        "<style>.t{font-size:18px;font-weight:bold}.h{font-size:14px;font-weight:bold}.s{font-size:11px;fill:#495057}"
        ".l{font-size:12px}.v{font-size:11px;fill:#212529}.w{stroke:#212529;stroke-width:1.2}</style>\n"
        f'<rect width="{width}" height="{height}" fill="white"/>\n'
        '<text x="10" y="26" class="t">WebSocket servers side by side: each on one core, blaze-bench on the other</text>\n'
        f'<text x="10" y="46" class="s">{html.escape(subtitle)}</text>\n'
    )
    return head + "\n".join(parts) + "\n</svg>\n"


# --------------------------------------------------------------------------
# BENCHMARKS.md


def write_section(md_path: Path, body: str) -> None:
    text = md_path.read_text() if md_path.exists() else "# Benchmarks\n"
    section = SECTION + "\n\n" + body.rstrip() + "\n"
    if SECTION in text:
        start = text.index(SECTION)
        nxt = text.find("\n## ", start + len(SECTION))
        end = len(text) if nxt < 0 else nxt + 1
        text = text[:start] + section + ("\n" + text[end:] if nxt >= 0 else "")
    else:
        text = text.rstrip() + "\n\n" + section
    md_path.write_text(text)


# --------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short runs, 1 repetition (a smoke run)")
    ap.add_argument("--reps", type=int, help="repetitions per scenario and server (default 3, 1 with --quick)")
    ap.add_argument("--servers", help="comma-separated subset of: " + ", ".join(n for n, _, _ in SERVERS))
    ap.add_argument("--scenarios", help="comma-separated subset of: echo-small, echo-64k, fanout-1k, fanout-10k, idle, connect-rate, echo-latency, fanout-latency, chat-32, chat-rooms")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=PATH [ARGS]",
                    help="one more server, e.g. 'blaze-before=/tmp/echo-old --runtime tokio' (repeatable)")
    ap.add_argument("--md", action="store_true", help="write BENCHMARKS.md even with --quick")
    ap.add_argument("--no-md", action="store_true", help="do not touch BENCHMARKS.md")
    ap.add_argument("--keep-cc", action="store_true", help="leave TCP congestion control as it is")
    ap.add_argument("--md-path", default=str(ROOT / "BENCHMARKS.md"), help="the Markdown file to update")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results"), help="output folder")
    ap.add_argument("--set", choices=["servers", "deflate", "scale"], default="servers",
                    help="scenario set: the default comparison, the permessage-deflate one, or fan-out at 1k-19k "
                         "subscribers (the last two never write BENCHMARKS.md)")
    args = ap.parse_args()
    deflate_set = args.set == "deflate"
    if args.set != "servers":
        args.no_md = True

    reps = args.reps or (1 if args.quick else 3)
    scs = {"deflate": deflate_scenarios, "scale": scale_scenarios, "servers": scenarios}[args.set](args.quick)
    if args.scenarios:
        want = args.scenarios.split(",")
        scs = [s for s in scs if s["key"] in want]
    servers = []
    table = [s for s in (DEFLATE_SERVERS if deflate_set else SERVERS) if not args.servers or s[0] in args.servers.split(",")]
    for spec in args.extra:
        name, _, cmd = spec.partition("=")
        parts = shlex.split(cmd)
        table.append((name, Path(parts[0]).resolve(), parts[1:]))
    for name, binary, extra in table:
        if not binary.exists():
            if name in OPTIONAL:
                log(f"skipping {name}: {binary} not built")
                continue
            print(f"missing {binary}: run scripts/bench.sh (it builds everything)", file=sys.stderr)
            return 2
        servers.append((name, binary, extra))
    if not BLAZE_BENCH.exists():
        print(f"missing {BLAZE_BENCH}: run scripts/bench.sh", file=sys.stderr)
        return 2
    names = [n for n, _, _ in servers]

    # Run copies of the binaries: others share this work tree and may rebuild
    # target/release mid-run; every run of a server must be the same program.
    snapshot = Path(tempfile.mkdtemp(prefix="blaze-compare-"))
    copies: dict[Path, Path] = {}
    binaries_md = []
    for path in [BLAZE_BENCH] + [b for _, b, _ in servers]:
        if path in copies:
            continue
        copy = snapshot / str(len(copies)) / path.name
        copy.parent.mkdir()
        shutil.copy2(path, copy)
        copies[path] = copy
        digest = hashlib.sha256(copy.read_bytes()).hexdigest()[:12]
        built = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc)
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        binaries_md.append(f"`{shown}` (built {built:%Y-%m-%d %H:%M} UTC, sha256 {digest}…)")
    bench_bin = copies[BLAZE_BENCH]
    run_servers = [(n, copies[b], e) for n, b, e in servers]

    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    suffix = ("" if args.set == "servers" else f"-{args.set}") + ("-quick" if args.quick else "")
    raw_path = results / f"raw{suffix}.jsonl"
    chart_path = results / f"chart{suffix}.svg"
    log_path = results / f"run{suffix}.log"

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGHUP, on_sigterm)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = load_snapshot()
    cc_used = CC_PATH.read_text().strip() if CC_PATH.exists() else "unknown"
    rows: list[dict] = []
    port_n = 0
    interrupted = False
    try:
        if not args.keep_cc:
            Run.saved_cc = cc_used
            set_cc("cubic")
            cc_used = CC_PATH.read_text().strip()
            log(f"congestion control: {Run.saved_cc} -> {cc_used} (restored at the end)")
        with open(raw_path, "w") as raw, open(log_path, "w") as logf:
            total = sum(1 for sc in scs for name, _, _ in servers if runs_in(sc, name)) * reps
            n = 0
            for sc in scs:
                for rep in range(reps):
                    # Servers interleaved within each repetition, so slow drifts in
                    # the machine's load hit all of them alike.
                    for name, binary, extra in run_servers:
                        if not runs_in(sc, name):
                            continue
                        n += 1
                        port = PORT_BASE + port_n % PORT_SPAN
                        port_n += 1
                        row = dict(server=name, scenario_key=sc["key"], rep=rep + 1, port=port, ok=False, error="", result=None)
                        t0 = time.monotonic()
                        try:
                            proc = start_server(binary, extra, port, logf)
                            cell = dict(sc, args=sc["args"] + ["--deflate", client_deflate(name)]) if deflate_set else sc
                            result, err = run_bench(cell, port, proc.pid, logf, bench_bin)
                            if proc.poll() is not None:
                                err = err or f"server exited with {proc.returncode}"
                            row.update(ok=not err and result is not None, error=err, result=result, pid=proc.pid)
                        except RuntimeError as e:
                            row.update(error=str(e))
                        finally:
                            stop_server(Run.server)
                        row["wall_s"] = round(time.monotonic() - t0, 2)
                        raw.write(json.dumps(row) + "\n")
                        raw.flush()
                        rows.append(row)
                        val = metric_of(row["result"] or {}, sc["metric"])
                        cpu = (row["result"] or {}).get("server_cpu_us_per_op")
                        sat = (row["result"] or {}).get("client_saturated")
                        log(f"[{n}/{total}] {sc['key']:<10} rep {rep + 1} {name:<18} "
                            + (f"{val} {sc['unit']}, {cpu} µs/op, client saturated: {sat}" if row["ok"] else f"FAILED: {row['error']}")
                            + (f" (partial: {val})" if not row["ok"] and val is not None else ""))
                        # Let the closed connections' state settle a moment.
                        time.sleep(1.0)
    except KeyboardInterrupt as e:
        interrupted = True
        print(f"\ninterrupted ({e}); cleaning up", file=sys.stderr)
    finally:
        stop_server(Run.server)
        restore_cc()
        shutil.rmtree(snapshot, ignore_errors=True)

    if not rows:
        return 1
    finished = datetime.datetime.now(datetime.timezone.utc)
    load_after = load_snapshot()
    summary = summarize(rows, scs, names)
    if deflate_set:
        print("\n" + deflate_tables(summary, rows, scs, names))
        log(f"raw results: {raw_path}\nlog: {log_path}\nbinaries: {'; '.join(binaries_md)}")
        return 130 if interrupted else 0
    m = machine()
    subtitle = (f"{m['nproc']} × {m['cpu']}, Linux {m['kernel']}; {started:%Y-%m-%d}; congestion control {cc_used}; "
                f"{reps} run(s) per cell{' (quick)' if args.quick else ''}")
    chart_path.write_text(chart(summary, scs, names, subtitle))
    table_md = tables(summary, scs, names)
    targets_md = targets(summary) if {"blaze (tokio)", "fastwebsockets", "tokio-tungstenite"} <= set(names) else "(not all servers ran)"
    print("\n" + table_md + "\n" + targets_md + "\n")
    log(f"raw results: {raw_path}\nchart: {chart_path}\nlog: {log_path}")

    example = next((s for s in scs), None)
    cmds = []
    if example:
        for name, binary, extra in servers:
            shown = binary.relative_to(ROOT) if binary.is_relative_to(ROOT) else binary
            cmds.append("    " + shlex.join(server_command(shown, extra, 19000)) + f"   # {name}")
        for sc in scs:
            cmds.append("    " + shlex.join(bench_command(sc, 19000, "$SERVER_PID")).replace(str(ROOT) + "/", "").replace("'$SERVER_PID'", "$SERVER_PID"))
    body = f"""Generated by `scripts/bench.sh{' --quick' if args.quick else ''}` (bench/compare.py){' — INTERRUPTED, partial' if interrupted else ''}.
Do not edit this section by hand: the script rewrites it. Analysis is in the next section.

- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['mem']} RAM, Linux {m['kernel']}.
- Date: {started:%Y-%m-%d %H:%M} – {finished:%H:%M} UTC; {reps} repetition(s) per scenario and server, medians reported; servers interleaved within each repetition.
- TCP congestion control during the run: `{cc_used}` (the machine's default is restored afterwards; bbr paces loopback sends and hides differences).
- Binaries (copied before the run, so a rebuild by someone else mid-run cannot mix versions):
  {"; ".join(binaries_md)}.
- Pinning: every server is a fresh process per scenario and repetition, pinned to core {SERVER_CORE}, one runtime thread
  (Blaze: tokio multi_thread with 1 worker, or async-std with ASYNC_STD_THREAD_COUNT=1; peers: tokio current_thread);
  blaze-bench pinned to core {CLIENT_CORE}. "Load tool saturated" means blaze-bench used > 90% of its core: then throughput is a lower
  bound and server CPU per op is the fairer comparison.
- Load on the machine (other engineers share these 2 cores, so absolute numbers are noisy; ratios within the run are what counts):
  before: {load_before}; after: {load_after}.
- Peers (bench/peers, own Cargo.lock): tokio-tungstenite 0.30 (`forward` echo, per-client unbounded channels for broadcast),
  fastwebsockets 0.10 + hyper 1 (`read_frame`/`write_frame` echo as in its examples, per-client channels drained into a buffered writer
  for broadcast), axum 0.8 ws (`recv`/`send` echo, per-client channels + `forward` for broadcast). TCP_NODELAY on everywhere.

Commands (per run; the port changes every run):

    scripts/bench.sh{' --quick' if args.quick else ''}    # builds, then: python3 bench/compare.py{' --quick' if args.quick else ''}
{chr(10).join(cmds)}

Raw JSON lines: [bench/results/{raw_path.name}](bench/results/{raw_path.name}); chart: [bench/results/{chart_path.name}](bench/results/{chart_path.name}).

![servers side by side](bench/results/{chart_path.name})

### Targets

{targets_md}

### Results

{table_md}
"""
    if not args.no_md and (not args.quick or args.md):
        write_section(Path(args.md_path), body)
        log("BENCHMARKS.md updated")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
