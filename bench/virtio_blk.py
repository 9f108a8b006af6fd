#!/usr/bin/env python3
"""virtio-blk sequential throughput inside the guest: micro86 beside QEMU TCG on the same command
line (when qemu-system-x86_64 is installed). Figures, not a pass/fail test.

The guest (micro86's virtio guest kernel + the busybox initramfs) runs dd with O_DIRECT on the raw
disk /dev/vda (a sparse image file in a temporary directory on the host):
  write 1M   dd if=/dev/zero of=/dev/vda bs=1M count=SIZE oflag=direct
  read 1M    dd if=/dev/vda of=/dev/null bs=1M count=SIZE iflag=direct
  write 4k / read 4k: the same with 4 KiB blocks over SIZE/4 MiB
and times each with the kernel's monotonic clock (/proc/timer_list "now at"), so the figures are
MB/s of guest time (realtime mode: guest time follows the host's clock). The host side is the same
for both emulators: pread/pwrite on the image through the host's page cache, no fsync.

The read-4k line also gives the latency of one synchronous 4 KiB read (microseconds of guest time);
compare --smp 1 with --smp 2 (an interrupt for a halted vCPU must wake it at once).

usage: bench/virtio_blk.py [MICRO86_BINARY] [--runs N] [--size MIB] [--legacy true|false] [--smp N]
Guest assets: M86_VIRTIO_KERNEL (else scripts/guest-kernel.sh) and M86_INITRD (else
scripts/guest-assets.sh).
"""
import argparse
import base64
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def asset(var, script):
    v = os.environ.get(var)
    if v:
        return v
    out = subprocess.run([os.path.join(ROOT, "scripts", script)], check=True, capture_output=True, text=True).stdout
    return dict(l.split("=", 1) for l in out.strip().splitlines() if l.startswith("M86_"))[var]


def guest_script(size):
    small = max(size // 4, 1)
    return f"""t() {{ head -3 /proc/timer_list | sed -n 's/^now at \\([0-9]*\\) nsecs/\\1/p'; }}
run() {{ name=$1 bytes=$2; shift 2; a=$(t); dd "$@" 2>/dev/null || echo "DDFAIL $name"; b=$(t); echo "RESULT $name $bytes $((b-a))"; }}
run write-1M {size << 20} if=/dev/zero of=/dev/vda bs=1M count={size} oflag=direct
run read-1M {size << 20} if=/dev/vda of=/dev/null bs=1M count={size} iflag=direct
run write-4k {small << 20} if=/dev/zero of=/dev/vda bs=4k count={small * 256} oflag=direct
run read-4k {small << 20} if=/dev/vda of=/dev/null bs=4k count={small * 256} iflag=direct
"""


def measure(argv):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=900)
    out = p.stdout.decode(errors="replace")
    res = {}
    for name, nbytes, ns in re.findall(r"RESULT (\S+) (\d+) (\d+)", out):
        res[name] = int(nbytes) / (int(ns) / 1e9) / 1e6 if int(ns) > 0 else None
    if "DDFAIL" in out or len(res) < 4:
        print(f"warning: incomplete run of {argv[0]}: {out[-400:]!r}", file=sys.stderr)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary", nargs="?", default=os.path.join(ROOT, "build", "micro86"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", type=int, default=32, help="MiB per 1M-block test (default 32)")
    ap.add_argument("--legacy", default="true", help="virtio-mmio.force-legacy (default true, as QEMU)")
    ap.add_argument("--smp", type=int, default=1, help="guest CPUs (default 1)")
    a = ap.parse_args()
    kernel = asset("M86_VIRTIO_KERNEL", "guest-kernel.sh")
    initrd = asset("M86_INITRD", "guest-assets.sh")
    b64 = base64.b64encode(guest_script(a.size).encode()).decode()
    qemu = shutil.which("qemu-system-x86_64")
    with tempfile.TemporaryDirectory(prefix="m86-bench-") as tmp:
        img = os.path.join(tmp, "bench.img")
        with open(img, "wb") as f:
            f.truncate((a.size + 8) << 20)
        common = ["-m", "256M", "-smp", str(a.smp), "-nodefaults", "-serial", "stdio", "-no-reboot",
                  "-kernel", kernel, "-initrd", initrd,
                  "-append", f"console=ttyS0 quiet reboot=t m86.run64={b64}",
                  "-drive", f"id=d0,file={img},format=raw,if=none", "-device", "virtio-blk-device,drive=d0",
                  "-global", f"virtio-mmio.force-legacy={a.legacy}"]
        emus = [("micro86", [os.path.abspath(a.binary), *common])]
        if qemu:
            emus.append(("QEMU TCG", [qemu, "-M", "microvm,acpi=off", "-accel", "tcg", "-display", "none", *common]))
        results = {}
        for label, argv in emus:
            runs = [measure(argv) for _ in range(a.runs)]
            results[label] = {k: statistics.median(r[k] for r in runs if r.get(k)) for k in runs[0] if
                              any(r.get(k) for r in runs)}
    tests = ["write-1M", "read-1M", "write-4k", "read-4k"]
    print(f"virtio-blk in the guest, dd O_DIRECT on /dev/vda, {a.size} MiB (4k: {max(a.size // 4, 1)} MiB), "
          f"force-legacy={a.legacy}, -smp {a.smp}, median of {a.runs} run(s), MB/s of guest time")
    head = f"{'test':10} {'micro86':>10}"
    if qemu:
        head += f" {'QEMU TCG':>10} {'micro86/QEMU':>13}"
    print(head)
    for t in tests:
        m = results["micro86"].get(t)
        line = f"{t:10} {m:10.1f}" if m else f"{t:10} {'-':>10}"
        if qemu:
            q = results["QEMU TCG"].get(t)
            line += f" {q:10.1f}" if q else f" {'-':>10}"
            line += f" {m / q:12.2f}x" if m and q else f" {'-':>13}"
        print(line)
    lat = {label: 4096 / r["read-4k"] for label, r in results.items() if r.get("read-4k")}  # MB/s -> us
    if "micro86" in lat:
        line = f"{'us/4k-read':10} {lat['micro86']:10.1f}"
        if "QEMU TCG" in lat:
            line += f" {lat['QEMU TCG']:10.1f} {lat['micro86'] / lat['QEMU TCG']:12.2f}x"
        print(line)
    if not qemu:
        print("(qemu-system-x86_64 not installed: no QEMU figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
