#!/usr/bin/env python3
"""Boot time to userspace: micro86 through qboot vs micro86's direct boot, and QEMU TCG (which
always boots microvm through qboot) on the same command line when qemu-system-x86_64 is installed.

Wall seconds from starting the emulator to the initramfs's M86-USERSPACE-READY marker, and to the
emulator's exit after the guest reboots; and the host CPU seconds (user + system) the emulator used
in all, which depend less on other load on the machine. Figures, not a pass/fail test.

usage: bench/boot_time.py [MICRO86_BINARY] [--runs N] [--smp N] [-m SIZE]
Guest assets: M86_KERNEL and M86_INITRD from the environment, else scripts/guest-assets.sh.
"""
import argparse
import base64
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = b"M86-USERSPACE-READY"

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from e2e_util import linux_assets


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def boot(argv, timeout=900):
    """(seconds to the marker, seconds to exit, CPU seconds) for one boot; None where it never got
    to the marker."""
    c0 = cpu_seconds()
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    seen, buf, t_marker = False, b"", None
    os.set_blocking(p.stdout.fileno(), True)
    while True:
        chunk = p.stdout.read1(65536)
        if not chunk:
            break
        buf = (buf + chunk)[-4096:]
        if not seen and MARKER in buf:
            seen, t_marker = True, time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            p.kill()
            break
    p.wait()
    return t_marker, time.monotonic() - t0, cpu_seconds() - c0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary", nargs="?", default=os.path.join(ROOT, "build", "micro86"))
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--smp", type=int, default=1)
    ap.add_argument("-m", default="512M")
    a = ap.parse_args()
    kernel, initrd = linux_assets()
    script = base64.b64encode(b"true\n").decode()  # the initramfs reboots right after the marker
    common = ["-m", a.m, "-smp", str(a.smp), "-kernel", kernel, "-initrd", initrd,
              "-append", f"console=ttyS0 reboot=t panic=-1 m86.run64={script}",
              "-no-reboot", "-nodefaults", "-serial", "stdio"]
    configs = [("micro86 qboot", [a.binary, "-M", "microvm,acpi=off", "-bios", "qboot.rom", *common]),
               ("micro86 direct", [a.binary, "-M", "microvm,acpi=off", "--direct-boot", *common])]
    qemu = shutil.which("qemu-system-x86_64")
    if qemu:
        configs.append(("QEMU TCG qboot", [qemu, "-M", "microvm,acpi=off", "-accel", "tcg", "-display", "none",
                                           *common]))
    results = {}
    print(f"kernel {kernel}\ninitrd {initrd}\n-m {a.m} -smp {a.smp}, {a.runs} run(s) each, median shown\n")
    print(f"{'':18} {'to userspace':>13} {'to exit':>9} {'CPU':>9}")
    cpu = {}
    for name, argv in configs:
        marks, totals, cpus = [], [], []
        for _ in range(a.runs):
            m, t, c = boot(argv)
            if m is not None:
                marks.append(m)
            totals.append(t)
            cpus.append(c)
        med = statistics.median(marks) if marks else None
        results[name] = med
        cpu[name] = statistics.median(cpus)
        shown = f"{med:12.2f}s" if med is not None else "     (never)"
        print(f"{name:18} {shown} {statistics.median(totals):8.2f}s {cpu[name]:8.2f}s")
        sys.stdout.flush()
    print()
    q, d = results.get("micro86 qboot"), results.get("micro86 direct")
    if q and d:
        print(f"micro86 qboot / direct:        {q / d:5.2f}x")
    t = results.get("QEMU TCG qboot")
    if q and t:
        print(f"micro86 qboot / QEMU TCG:      {q / t:5.2f}x  (QEMU TCG is {q / t:.1f} times faster)")
    if d and t:
        print(f"micro86 direct / QEMU TCG:     {d / t:5.2f}x")
    if "QEMU TCG qboot" in cpu and cpu["QEMU TCG qboot"] > 0:
        print(f"CPU seconds, micro86 qboot / QEMU TCG: {cpu['micro86 qboot'] / cpu['QEMU TCG qboot']:5.2f}x")
    if not qemu:
        print("(qemu-system-x86_64 not installed: no QEMU figure)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
