#!/usr/bin/env python3
"""End-to-end tests: boot the distro's stock kernel with a busybox initramfs on micro86.

Each scenario boots `micro86 -kernel ... -initrd ... -append "console=ttyS0 reboot=t m86.run=..."
-no-reboot`, lets the initramfs run the commands (its /init prints M86-USERSPACE-READY, runs the
m86.run commands, prints M86-RUN-DONE and reboots), and checks what the guest printed against
values computed here on the host. A scenario passes only if micro86 exits with status 0 after the
guest's reboot, every check holds, and the kernel log has no BUG/WARNING/Oops/panic/Call Trace.

usage: boot_linux.py MICRO86_BINARY [SCENARIO...]
Guest assets: M86_KERNEL and M86_INITRD from the environment, else scripts/guest-assets.sh.
"""
import base64
import hashlib
import os
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True
from e2e_util import BAD, linux_assets, micro86_arg, report


def host_values():
    seq = "".join(f"{i}\n" for i in range(1, 20001)).encode()
    # Busybox's awk has no math library; a harmonic sum still exercises double arithmetic, and
    # summed in the same order it is bit-identical on any IEEE-754 machine.
    s = 0.0
    for i in range(1, 20001):
        s += 1.0 / i
    return {"md5": hashlib.md5(seq).hexdigest(), "harmonic": f"{s:.12f}"}


# The shell script the guest runs (passed base64-encoded as m86.run64=..., see guest-assets.sh).
COMMON = [
    "echo UNAME=$(uname -r)",
    "echo MD5=$(seq 1 20000 | md5sum)",
    "awk 'BEGIN { s = 0; for (i = 1; i <= 20000; i++) s += 1 / i; printf \"HARMONIC=%.12f\\n\", s }'",
    "echo CPUS=$(grep -c ^processor /proc/cpuinfo)",
    "grep -m1 '^flags' /proc/cpuinfo",
    "cat /proc/interrupts",
]

SCENARIOS = {
    # Default board. clearcpuid=arat makes Linux treat the CPU like one without an always-running
    # APIC timer (as QEMU's TCG CPUs are), so it sets up the PIT through IO-APIC pin 2 (the IRQ0
    # override): timer and serial interrupts then both arrive through the IO-APIC.
    "default": {"args": [], "append": "clearcpuid=arat", "cpus": 1},
    # Two CPUs brought up by INIT/SIPI; local APIC timers.
    "smp2": {"args": ["-smp", "2"], "append": "", "cpus": 2},
    # No legacy timers or PIC: the local APIC timer (TSC deadline) and the TSC only.
    "nolegacy": {"args": ["-M", "microvm,pit=off,pic=off,rtc=off"], "append": "", "cpus": 1},
    # Deterministic time (-icount): booted twice, the serial output must be identical byte for byte.
    "deterministic": {"args": ["-icount", "shift=0", "-smp", "2"], "append": "", "cpus": 2, "twice": True},
    # Through the real qboot firmware (Debian's qemu-system-data): the kernel comes through fw_cfg
    # DMA, its real-mode setup code runs on qboot's BIOS services; the e820 map is qboot's.
    "qboot": {"args": ["-bios", "qboot.rom"], "append": "", "cpus": 1,
              "expect": ["BIOS-e820: [mem 0x00000000000d0000-0x00000000000effff] ACPI NVS",
                         "found SMP MP-table at [mem 0x0009fc00-0x0009fc0f]"]},
    # Direct boot into the 64-bit entry, no firmware (micro86's --direct-boot).
    "direct": {"args": ["--direct-boot"], "append": "", "cpus": 1,
               "reject": ["ACPI NVS"], "expect": ["found SMP MP-table at [mem 0x0009fc00-0x0009fc0f]"]},
    # The interpreter alone (every other scenario runs hot code through the JIT): the reference
    # semantics must boot Linux too, with two CPUs.
    "nojit": {"args": ["--no-jit", "-smp", "2"], "append": "", "cpus": 2},
    # The JIT lockstep checker (--jit-check=N: each block's first 16 runs and then one in 8 also run
    # through the interpreter and compared; a difference aborts micro86) through qboot, so that the
    # checked code switches modes: BIOS real mode, the kernel's real-mode setup, 32-bit protected
    # mode, long mode, and user space.
    "jitcheck": {"args": ["--jit-check=8", "--stats", "-bios", "qboot.rom"], "append": "", "cpus": 1,
                 "checked": True},
}


def irq_count(text, pattern):
    """Sum of the per-CPU counts on the /proc/interrupts line matching pattern."""
    for line in text.splitlines():
        if re.search(pattern, line):
            fields = line.split()
            return sum(int(f) for f in fields[1:] if f.isdigit())
    return None


def run_scenario(binary, name, sc, kernel, initrd, expect):
    script = base64.b64encode(("\n".join(COMMON) + "\n").encode()).decode()
    append = f"console=ttyS0 reboot=t panic=-1 {sc['append']} m86.run64={script}"
    argv = [binary, *sc["args"], "-m", "512M", "-kernel", kernel, "-initrd", initrd,
            "-append", append, "-no-reboot", "-nodefaults", "-serial", "stdio"]
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=600)
        out, rc = p.stdout.decode(errors="replace"), p.returncode
        err = p.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        out, rc, err = (e.stdout or b"").decode(errors="replace"), "timeout", ""
    secs = time.monotonic() - t0
    out = out.replace("\r", "")
    failures = []

    def check(cond, what):
        if not cond:
            failures.append(what)

    check(rc == 0, f"micro86 exit status {rc} (expected 0 after the guest's reboot)")
    check("M86-USERSPACE-READY" in out, "no userspace marker")
    check("M86-RUN-DONE" in out, "the commands did not finish")
    check(f"UNAME={expect['release']}" in out, f"uname -r is not {expect['release']}")
    check(f"MD5={expect['md5']}" in out, "md5sum of seq 1 20000 differs from the host's")
    check(f"HARMONIC={expect['harmonic']}" in out, f"awk's harmonic sum differs from the host's {expect['harmonic']}")
    check(f"CPUS={sc['cpus']}" in out, f"expected {sc['cpus']} CPUs online")
    check(re.search(r"^flags\s*:.*\bsse2\b", out, re.M) is not None, "no sse2 in /proc/cpuinfo flags")
    serial = irq_count(out, r"IO-APIC\s+4-edge\s+ttyS0")
    check(serial is not None and serial > 0, "no serial interrupts through the IO-APIC")
    if name == "default":
        timer = irq_count(out, r"IO-APIC\s+2-edge\s+timer")
        check(timer is not None and timer > 0, "no PIT timer interrupts through the IO-APIC (pin 2)")
    else:
        loc = irq_count(out, r"^\s*LOC:")
        check(loc is not None and loc > 0, "no local APIC timer interrupts")
    if sc["cpus"] > 1:
        m = re.search(r"^\s*LOC:\s+(\d+)\s+(\d+)", out, re.M)
        check(m is not None and int(m.group(2)) > 0, "the second CPU takes no timer interrupts")
    if sc.get("checked"):
        m = re.search(r"jit-check: (\d+) block runs checked", err)
        check(m is not None and int(m.group(1)) > 0, "--jit-check checked no block runs")
    for text in sc.get("expect", []):
        check(text in out, f"the kernel log lacks {text!r}")
    for text in sc.get("reject", []):
        check(text not in out, f"the kernel log has {text!r}")
    if sc.get("twice"):
        p2 = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=600)
        out2 = p2.stdout.decode(errors="replace").replace("\r", "")
        if out2 != out:
            a, b = out.splitlines(), out2.splitlines()
            first = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
            check(False, f"second deterministic run differs at line {first + 1}: "
                         f"{a[first] if first < len(a) else '<end>'!r} vs {b[first] if first < len(b) else '<end>'!r}")
    bad = [l for l in out.splitlines() if BAD.search(l) and "ommand line:" not in l]
    check(not bad, "kernel log has: " + "; ".join(bad[:3]))
    boot_s = None
    m = re.search(r"\[\s*([\d.]+)\]\s+Run /init", out)
    if m:
        boot_s = float(m.group(1))
    return failures, secs, boot_s, out, err


def main():
    binary = micro86_arg(__doc__)
    names = sys.argv[2:] or list(SCENARIOS)
    kernel, initrd = linux_assets()
    expect = host_values()
    # The kernel release from the package file name: .../kernel/<release>/vmlinuz
    expect["release"] = os.path.basename(os.path.dirname(kernel))
    passed = failed = 0
    for name in names:
        failures, secs, boot_s, out, err = run_scenario(binary, name, SCENARIOS[name], kernel, initrd, expect)
        guest = f", guest reached /init at {boot_s:.2f} s" if boot_s is not None else ""
        if report(f"{name} ({secs:.1f} s{guest})", failures, out, err, tail=40):
            passed += 1
        else:
            failed += 1
    print(f"e2e: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
