#!/usr/bin/env python3
"""Multiboot test kernel: build tests/e2e/multiboot_hello.S here (GNU as + ld) as an ELF kernel and
as a flat a.out-kludge image, boot each on micro86 directly (--direct-boot) and through qboot, and
check the exit status it reports through isa-debug-exit and what it printed about the multiboot
information, against values from the Multiboot Specification 0.6.96 and the guest's RAM size.
When qemu-system-x86_64 is installed, the qboot boots must also print exactly what QEMU's microvm
prints for the same command line.

usage: multiboot.py MICRO86_BINARY
"""
import os
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
from e2e_util import assemble, micro86_arg, report

QEMU = shutil.which("qemu-system-x86_64")
RAM_MB = 128
EXIT_OK = (0x21 << 1) | 1  # the kernel writes 0x21 to the isa-debug-exit port when all went well


def build(tmp):
    """The ELF kernel, the rebooting ELF kernel and the flat a.out-kludge image, all at 1 MiB."""
    for out, defsyms, binary in (("k.elf", [], False), ("kr.elf", ["REBOOT=1"], False),
                                 ("k.bin", ["AOUT=1"], True)):
        assemble("multiboot_hello.S", os.path.join(tmp, out), defsyms, ttext="0x100000", binary=binary)


def run(argv, cwd):
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, cwd=cwd)
        return p.returncode, p.stdout.decode(errors="replace").replace("\r", ""), p.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        return "timeout", (e.stdout or b"").decode(errors="replace"), ""


def expected(kernel, modules, cmdline, firmware):
    """The lines the kernel prints, from the specification and the board's memory layout."""
    mem_upper = (RAM_MB * 1024) - 1024  # KiB of RAM from 1 MiB to the end of low RAM
    lines = [
        "hello from multiboot",
        f"flags={0x24f:08x}",          # memory, boot device, cmdline, modules, memory map, loader name
        f"mem_lower={639:08x}",        # KiB below the EBDA / MP table at 0x9fc00
        f"mem_upper={mem_upper:08x}",
        f"boot_device={0x8000ffff:08x}",
        f"cmdline={kernel} {cmdline}",
        f"mods_count={len(modules):08x}",
    ]
    for string, data in modules:
        first = data.split(b"\n")[0].decode()
        lines.append(f"mod={string} size={len(data):08x} page_offset={0:08x} data={first}")
    lines.append("loader=qemu")
    ram = lambda a, n: f"mmap={a:016x} {n:016x} {1:08x}"
    res = lambda a, n, t=2: f"mmap={a:016x} {n:016x} {t:08x}"
    if firmware:  # qboot's map: its own low entries, then etc/e820 with the RAM from 1 MiB
        lines += [ram(0, 0x9fc00), res(0x9fc00, 0x400), res(0xd0000, 0x20000, 4), res(0xf0000, 0x10000),
                  ram(0x100000, (RAM_MB << 20) - 0x100000)]
    else:  # micro86's direct-boot map (the same as its Linux zero page)
        lines += [ram(0, 0x9fc00), res(0x9fc00, 0x400), res(0xf0000, 0x10000),
                  ram(0x100000, (RAM_MB << 20) - 0x100000)]
    lines.append("bye")
    return lines


def main():
    m86 = micro86_arg(__doc__, ("as", "ld"), "GNU binutils, to build the test kernel")
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="m86-mb-") as tmp:
        build(tmp)
        mods = [("m1.txt arg1 arg2", b"first module\nline2\n"), ("m2.txt a,b", b"second, with comma\n")]
        for name, data in (("m1.txt", mods[0][1]), ("m2.txt", mods[1][1])):
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
        initrd = "m1.txt arg1 arg2,m2.txt a,,b"  # ",," is a literal comma (QEMU's option syntax)
        cmdline = "foo bar=baz"
        have_qboot = any(os.path.exists(os.path.join(d, "qboot.rom")) for d in ("/usr/share/qemu",
                                                                               "/usr/local/share/qemu"))
        for kernel in ("k.elf", "k.bin"):
            for mode in ("direct", "qboot"):
                if mode == "qboot" and not have_qboot:
                    print(f"SKIP {kernel} {mode}: no qboot.rom (install qemu-system-data)")
                    continue
                boot = ["--direct-boot"] if mode == "direct" else ["-bios", "qboot.rom"]
                args = ["-m", f"{RAM_MB}M", "-kernel", kernel, "-initrd", initrd, "-append", cmdline,
                        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x4", "-nodefaults", "-serial", "stdio"]
                rc, out, err = run([m86, *boot, *args], tmp)
                failures = []
                if rc != EXIT_OK:
                    failures.append(f"exit status {rc}, expected {EXIT_OK} ((0x21 << 1) | 1)")
                want = expected(kernel, mods, cmdline, mode == "qboot")
                got = [l for l in out.splitlines() if l and not l.startswith("mmap=0000000000000000 0000000000000000")]
                if got != want:
                    for w, g in zip(want + [""] * len(got), got + [""] * len(want)):
                        if w != g:
                            failures.append(f"expected {w!r}, got {g!r}")
                            break
                if mode == "qboot" and QEMU:
                    qrc, qout, qerr = run([QEMU, "-M", "microvm,acpi=off", "-accel", "tcg", "-display", "none", *args],
                                          tmp)
                    if (qrc, qout) != (rc, out):
                        failures.append(f"differs from QEMU (QEMU: status {qrc}, output {qout[-200:]!r})")
                label = f"{kernel} {mode}" + (" (same as QEMU)" if mode == "qboot" and QEMU and not failures else "")
                if report(label, failures, out, err, tail=20):
                    passed += 1
                else:
                    failed += 1
        # A machine reset (triple fault, no -no-reboot) boots the kernel again, directly or through
        # the firmware; the kernel counts its boots in RAM and stops after the third.
        for mode in ("direct", "qboot"):
            if mode == "qboot" and not have_qboot:
                continue
            boot = ["--direct-boot"] if mode == "direct" else ["-bios", "qboot.rom"]
            rc, out, err = run([m86, *boot, "-m", f"{RAM_MB}M", "-kernel", "kr.elf", "-device",
                                "isa-debug-exit,iobase=0xf4,iosize=0x4", "-nodefaults", "-serial", "stdio"], tmp)
            boots = [l for l in out.splitlines() if l.startswith("boot=")]
            ok = rc == EXIT_OK and boots == [f"boot={n:08x}" for n in (1, 2, 3)] and out.count("hello from") == 3
            passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)
            print(f"{'ok  ' if ok else 'FAIL'} reset and boot again, {mode}" +
                  ("" if ok else f": status {rc}, boots {boots}, stderr {err.strip()[:200]}"))
    print(f"multiboot: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
