"""Unikernel worker figures: boot to first answer, image sizes, CPU per echo round trip, idle CPU, RSS.

Run: .venv/bin/python -m bench.unikernel_metrics [--boots N] [--round-trips N] [--in-flight N]
"""

import argparse
import os
import resource
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gateway.unikernel import qemu, wire
from tests.unikernel.harness import Worker

CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVICES = ("echo", "kv", "static", "auth", "webhook")


def cpu_seconds(pid):
    """utime + stime of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_kib(pid):
    """VmRSS, RssAnon and RssFile of a process in KiB."""
    found = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                found[key] = int(value.split()[0])
    return found


def measure_process_floor(runs):
    """Median milliseconds for `qemu-system-x86_64 -version`: what starting the QEMU process alone costs."""
    binary = qemu.check_qemu()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([binary, "-version"], stdout=subprocess.DEVNULL, check=True)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def own_cpu():
    """This process's user + system CPU seconds."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def measure_boot(log_dir, boots):
    """Median milliseconds from spawning QEMU to the first ping answer."""
    times = []
    for _ in range(boots):
        worker = Worker("echo", log_dir)
        try:
            t0 = time.perf_counter()
            worker.start()
            worker.wait_ready()
            times.append((time.perf_counter() - t0) * 1000)
        finally:
            worker.stop()
    return statistics.median(times), min(times), max(times)


def measure_round_trips(worker, round_trips, in_flight, payload=b"x" * 64):
    """(QEMU us, Python us) of CPU per echo round trip with in_flight requests outstanding."""
    link, reasm, mac, peer = worker.link, worker.reassembler, worker.link.mac, worker.guest_mac
    ids = wire.RequestIds()
    encode, feed, recv, send = wire.encode, reasm.feed, link.recv, link.send
    q0, p0 = cpu_seconds(worker.proc.pid), own_cpu()
    sent = done = 0
    backlog = []
    while done < round_trips:
        while sent - done < in_flight and sent < round_trips:
            frame = encode(peer, mac, ids.next(), wire.Op.ECHO, payload)[0]
            if not send(frame):
                backlog.append(frame)
                break
            sent += 1
        select.select([link], [], [], 1.0)
        while (frame := recv()) is not None:
            if feed(frame) is not None:
                done += 1
        while backlog and send(backlog[0]):
            backlog.pop(0)
            sent += 1
    q1, p1 = cpu_seconds(worker.proc.pid), own_cpu()
    return (q1 - q0) / round_trips * 1e6, (p1 - p0) / round_trips * 1e6


def main(argv=None):
    """Print the figures as a Markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boots", type=int, default=15)
    ap.add_argument("--round-trips", type=int, default=200_000)
    ap.add_argument("--in-flight", type=int, default=32)
    ap.add_argument("--idle-seconds", type=float, default=5.0)
    args = ap.parse_args(argv)
    subprocess.run(["make", "-s", "-C", str(qemu.IMAGE_DIR.parent)], check=True, stdout=subprocess.DEVNULL)
    rows = []
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as log_dir:
        median, low, high = measure_boot(log_dir, args.boots)
        floor = measure_process_floor(args.boots)
        rows.append(("boot to first answer (incl. QEMU start), median of %d" % args.boots,
                     f"{median:.1f} ms (min {low:.1f}, max {high:.1f})", "< 25 ms"))
        rows.append(("for scale: `qemu-system-x86_64 -version` alone, median", f"{floor:.1f} ms", ""))
        for name in SERVICES:
            size = Path(qemu.find_image(name)).stat().st_size
            rows.append((f"image size: {name}", f"{size / 1024:.1f} KiB ({size} bytes)", "< 64 KiB"))
        worker = Worker("echo", log_dir)
        try:
            worker.start()
            worker.wait_ready()
            time.sleep(0.5)     # let the boot's one-off work settle before the idle window
            c0, t0 = cpu_seconds(worker.proc.pid), time.monotonic()
            time.sleep(args.idle_seconds)
            idle = (cpu_seconds(worker.proc.pid) - c0) / (time.monotonic() - t0) * 100
            mem = memory_kib(worker.proc.pid)
            measure_round_trips(worker, 2000, args.in_flight)        # warm TCG's translation cache
            q_us, p_us = measure_round_trips(worker, args.round_trips, args.in_flight)
        finally:
            worker.stop()
        rows.append((f"QEMU CPU per echo round trip ({args.in_flight} in flight, {args.round_trips} trips)",
                     f"{q_us:.2f} us", "6-9 us"))
        rows.append(("Python CPU per echo round trip (wire.encode + Reassembler.feed + socket)",
                     f"{p_us:.2f} us", "3-4 us"))
        rows.append((f"idle CPU per worker over {args.idle_seconds:.0f} s", f"{idle:.2f} %", "< 1 %"))
        rows.append(("QEMU RSS per idle worker (-m 16)", f"{mem['VmRSS'] / 1024:.1f} MiB", "< 32 MB"))
        rows.append(("  of which private (RssAnon)", f"{mem['RssAnon'] / 1024:.1f} MiB", ""))
        rows.append(("  of which file pages shared by all workers (RssFile)", f"{mem['RssFile'] / 1024:.1f} MiB", ""))
    print(f"load average before/after: {load0} / {os.getloadavg()}")
    print(f"accelerator: {qemu.choose_accel('auto')}; argv: {' '.join(worker.argv)}\n")
    print("| figure | measured | goal |\n| --- | --- | --- |")
    for row in rows:
        print("| %s | %s | %s |" % row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
