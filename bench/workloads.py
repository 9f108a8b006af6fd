#!/usr/bin/env python3
"""In-guest workloads, micro86 beside QEMU TCG in one run: the ratios issue 8's JIT work is judged by.

One boot per emulator (the stock Debian kernel and the busybox initramfs, -M microvm,acpi=off,
-m 512M, 1 vCPU, booted through the firmware as QEMU does) runs every workload in turn and times
each with the guest kernel's monotonic clock (/proc/timer_list; realtime mode, so guest time follows
the host's clock). Each workload also prints a checksum of its output: both emulators must agree,
and the script says so. Figures, not a pass/fail test.

  awk-fp     awk: a floating-point loop (sqrt, multiply, add), 2M iterations
  awk-int    awk: an integer loop (multiply, add, modulo), 100k iterations
  sha256     sha256sum of 15 MB (rotates, adds and logic ops: the JIT's integer core)
  gzip       gzip -1 then gunzip of 3.4 MB of text (seq 1 500000)
  sort       sort 500k lines
  fork-exec  300 fork+exec of /bin/true (process creation, page faults, TLB flushes, new code)

usage: bench/workloads.py [MICRO86_BINARY] [--runs N] [--only NAME,...] [--no-qemu] [-- EXTRA MICRO86 ARGS]
Guest assets: M86_KERNEL and M86_INITRD from the environment, else scripts/guest-assets.sh.
"""
import argparse
import base64
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from e2e_util import linux_assets

WORKLOADS = {
    "awk-fp": "awk 'BEGIN { s = 0; for (i = 1; i <= 2000000; i++) s += sqrt(i) * 1.5; printf \"%.6f\\n\", s }'",
    "awk-int": "awk 'BEGIN { s = 0; for (i = 1; i <= 100000; i++) s = (s + i * 7) % 1000003; print s }'",
    "sha256": "sha256sum /tmp/lines",
    "gzip": "gzip -1 -c /tmp/small > /tmp/small.gz && gunzip -c /tmp/small.gz | md5sum",
    "sort": "sort /tmp/small | md5sum",
    "fork-exec": "i=0; while [ $i -lt 300 ]; do /bin/true; i=$((i + 1)); done; echo $i",
}


def guest_script(names):
    lines = [
        "t() { head -3 /proc/timer_list | sed -n 's/^now at \\([0-9]*\\) nsecs/\\1/p'; }",
        # The inputs, made before any timing: 15 MB and 3.4 MB of text.
        "seq 1 2000000 > /tmp/lines; seq 1 500000 > /tmp/small",
    ]
    for n in names:
        lines.append(f"a=$(t); out=$({WORKLOADS[n]} 2>&1 | md5sum | cut -c1-8); b=$(t); echo \"RESULT {n} $((b - a)) $out\"")
    return "\n".join(lines) + "\n"


def run_once(argv, timeout=3600):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    out = p.stdout.decode(errors="replace")
    res = {name: (int(ns) / 1e9, ck) for name, ns, ck in re.findall(r"RESULT (\S+) (\d+) (\S+)", out)}
    return res, out


def main():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary", nargs="?", default=os.path.join(ROOT, "build", "micro86"))
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--only", default=",".join(WORKLOADS))
    ap.add_argument("--no-qemu", action="store_true")
    a = ap.parse_args(argv)
    names = [n for n in a.only.split(",") if n]
    for n in names:
        if n not in WORKLOADS:
            sys.exit(f"unknown workload {n!r} (known: {', '.join(WORKLOADS)})")
    kernel, initrd = linux_assets()
    b64 = base64.b64encode(guest_script(names).encode()).decode()
    common = ["-m", "512M", "-smp", "1", "-nodefaults", "-serial", "stdio", "-no-reboot", "-kernel", kernel,
              "-initrd", initrd, "-append", f"console=ttyS0 quiet reboot=t panic=-1 m86.run64={b64}"]
    emus = [("micro86", [os.path.abspath(a.binary), *common, *extra])]
    qemu = None if a.no_qemu else shutil.which("qemu-system-x86_64")
    if qemu:
        emus.append(("QEMU TCG", [qemu, "-M", "microvm,acpi=off", "-accel", "tcg", "-display", "none", *common]))
    results = {label: {} for label, _ in emus}
    sums = {label: {} for label, _ in emus}
    for r in range(a.runs):
        for label, cmd in emus:  # interleaved, so both see the same host load
            t0 = time.monotonic()
            res, out = run_once(cmd)
            missing = [n for n in names if n not in res]
            if missing:
                print(f"warning: {label} run {r + 1}: no result for {', '.join(missing)}: {out[-300:]!r}", file=sys.stderr)
            for n, (secs, ck) in res.items():
                results[label].setdefault(n, []).append(secs)
                sums[label].setdefault(n, set()).add(ck)
            print(f"({label} run {r + 1}: {time.monotonic() - t0:.1f} s wall)", file=sys.stderr)
    print(f"in-guest workloads, seconds of guest time, median of {a.runs} run(s)")
    head = f"{'workload':10} {'micro86':>9}"
    if qemu:
        head += f" {'QEMU TCG':>9} {'micro86/QEMU':>13}  output"
    print(head)
    ratios = []
    for n in names:
        m = statistics.median(results["micro86"][n]) if n in results["micro86"] else None
        line = f"{n:10} {m:9.2f}" if m is not None else f"{n:10} {'-':>9}"
        if qemu:
            q = statistics.median(results["QEMU TCG"][n]) if n in results["QEMU TCG"] else None
            line += f" {q:9.2f}" if q is not None else f" {'-':>9}"
            if m and q:
                ratios.append(m / q)
                line += f" {m / q:12.2f}x"
            else:
                line += f" {'-':>13}"
            same = sums["micro86"].get(n) == sums["QEMU TCG"].get(n) and len(sums["micro86"].get(n, ())) == 1
            line += "  same" if same else f"  DIFFERENT {sums['micro86'].get(n)} vs {sums['QEMU TCG'].get(n)}"
        print(line)
    if ratios:
        gm = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        print(f"{'geo. mean':10} {'':9} {'':9} {gm:12.2f}x")
    if not qemu:
        print("(no QEMU figures: qemu-system-x86_64 not installed, or --no-qemu)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
