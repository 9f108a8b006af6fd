#!/usr/bin/env python3
"""Firmware boot tests: fw_cfg contents and the firmware mapping, with small firmware images built
here from tests/e2e/*.S (GNU as + ld).

1. fw_cfg_dump.S prints every fw_cfg item and file micro86 offers for several command lines. The
   dump is checked against values computed here from the specifications (QEMU's fw_cfg.rst, the
   Linux boot protocol, the multiboot layout) and, when qemu-system-x86_64 is installed, against
   QEMU's microvm running the same firmware on the same command line: the two dumps must be equal.
2. firmware_checks.S checks both firmware aliases, CPU writes and DMA keeping decoded code coherent,
   and reports through isa-debug-exit (exit status 0x21 = all passed), on micro86 and on QEMU.
3. Image and search errors: a firmware that is not a multiple of 64 KiB, a missing -bios, and the
   fallback to direct boot (with one message) when no qboot.rom is found.

usage: firmware.py MICRO86_BINARY
"""
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
from e2e_util import assemble, micro86_arg, report

QEMU = shutil.which("qemu-system-x86_64")


def qemu_argv(args):
    """The same command line for QEMU: its microvm with acpi=off (micro86's only mode), TCG."""
    props, rest, i = "", [], 0
    while i < len(args):
        if args[i] == "-M":
            props = "," + args[i + 1].split(",", 1)[1] if "," in args[i + 1] else ""
            i += 2
            continue
        rest.append(args[i])
        i += 1
    return [QEMU, "-M", "microvm,acpi=off" + props, "-accel", "tcg", "-display", "none", *rest]


def run(argv, timeout=120, env=None):
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, env=env)
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        return "timeout", (e.stdout or b"").decode(errors="replace"), ""


def parse_dump(text):
    """KEY/FILE lines of fw_cfg_dump into {name: (printed_hex, sum, size)}."""
    items = {}
    for line in text.splitlines():
        m = re.match(r"KEY ([0-9a-f]{4}):([0-9a-f]*) SUM ([0-9a-f]{8})$", line)
        if m:
            items[int(m.group(1), 16)] = (m.group(2), int(m.group(3), 16), None)
        m = re.match(r"FILE (\S+) ([0-9a-f]{8}) ([0-9a-f]{4}):([0-9a-f]*) SUM ([0-9a-f]{8})$", line)
        if m:
            items[m.group(1)] = (m.group(4), int(m.group(5), 16), int(m.group(2), 16))
        m = re.match(r"DMA-SIG (.*)$", line)
        if m:
            items["dma-signature"] = (m.group(1), 0, None)
    return items


def bsum(data):
    return sum(data[:65536]) & 0xffffffff


def make_bzimage(path, xloadflags=0x0003):
    """A bzImage as far as the boot protocol header goes (protocol 2.15, 4 setup sectors)."""
    rng = random.Random(86)
    setup = bytearray(5 * 512)
    setup[0x1f1] = 4
    struct.pack_into("<H", setup, 0x1fa, 0xffff)
    struct.pack_into("<H", setup, 0x1fe, 0xaa55)
    setup[0x200] = 0xeb
    setup[0x201] = 0x6a
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, 0x020f)
    setup[0x211] = 0x01  # LOADED_HIGH
    struct.pack_into("<I", setup, 0x214, 0x100000)
    struct.pack_into("<I", setup, 0x22c, 0x7fffffff)
    struct.pack_into("<I", setup, 0x230, 0x200000)
    setup[0x234] = 1
    struct.pack_into("<H", setup, 0x236, xloadflags)
    struct.pack_into("<I", setup, 0x238, 2047)
    kernel = bytes(rng.randrange(256) for _ in range(200 * 1024))
    with open(path, "wb") as f:
        f.write(bytes(setup) + kernel)
    return bytes(setup), kernel


def make_pvh_elf(path):
    """An ELF64 vmlinux as far as a PVH loader looks: one PT_LOAD, and a PT_NOTE with the Xen
    PHYS32_ENTRY note (type 18)."""
    f = bytearray(0x3100)
    f[0:16] = b"\x7fELF\x02\x01\x01" + bytes(9)
    struct.pack_into("<HHIQQQIHHHHHH", f, 16, 2, 62, 1, 0x1000100, 64, 0, 0, 64, 56, 2, 64, 0, 0)
    struct.pack_into("<IIQQQQQQ", f, 64, 1, 7, 0x1000, 0x1000000, 0x1000000, 0x2000, 0x3000, 0x1000)
    struct.pack_into("<IIQQQQQQ", f, 120, 4, 4, 0x3000, 0, 0, 20, 20, 4)
    struct.pack_into("<III4sI", f, 0x3000, 4, 4, 18, b"Xen\0", 0x1000100)
    rng = random.Random(5)
    for i in range(0x1000, 0x3000):
        f[i] = rng.randrange(256)
    with open(path, "wb") as out:
        out.write(bytes(f))
    return bytes(f)


class Checker:
    def __init__(self, name):
        self.name = name
        self.failures = []

    def eq(self, what, got, want):
        if got != want:
            self.failures.append(f"{what}: got {got!r}, expected {want!r}")


VIRTIO_CMD = b"x y virtio_mmio.device=512@0xfeb00e00:12 virtio_mmio.device=512@0xfeb00c00:11\0"


def first32(data):
    """What the dump prints of an item: its first 32 bytes (zeros past its end)."""
    return (bytes(data[:32]) + bytes(32))[:32].hex()


def le_hex(value, n):
    return value.to_bytes(n, "little").hex()


def check_common(c, d, ram, cpus, max_cpus):
    c.eq("DMA signature", d.get("dma-signature", ("",))[0], "QEMU CFG")
    c.eq("signature", d[0x00][0], b"QEMU".hex())
    c.eq("ID (traditional + DMA)", d[0x01][0], le_hex(3, 4))
    c.eq("RAM_SIZE", d[0x03][0], le_hex(ram, 8))
    c.eq("NB_CPUS", d[0x05][0], le_hex(cpus, 2))
    c.eq("MAX_CPUS", d[0x0f][0], le_hex(max_cpus, 2))
    c.eq("IRQ0_OVERRIDE", d[0x8002][0], le_hex(1, 4))
    c.eq("BOOT_MENU", d[0x0e][0], le_hex(0, 2))
    low = min(ram, 3 << 30)
    e820 = struct.pack("<QQI", 0, low, 1)
    if ram > low:
        e820 += struct.pack("<QQI", 1 << 32, ram - low, 1)
    got = d.get("etc/e820")
    c.eq("etc/e820 size", got and got[2], len(e820))
    c.eq("etc/e820 contents", got and (got[0], got[1]), (first32(e820), bsum(e820)))
    c.eq("etc/boot-fail-wait", d.get("etc/boot-fail-wait", ("",))[0][:8], "ffffffff")
    c.eq("bios-geometry size", d.get("bios-geometry", (0, 0, None))[2], 0)


def check_linux(c, d, setup, kernel, initrd, cmdline, ram, option_rom):
    c.eq("KERNEL_ADDR", d[0x07][0], le_hex(0x100000, 4))
    c.eq("KERNEL_SIZE", d[0x08][0], le_hex(len(kernel), 4))
    c.eq("KERNEL_DATA", (d[0x11][0], d[0x11][1]), (kernel[:32].hex(), bsum(kernel)))
    c.eq("SETUP_ADDR", d[0x16][0], le_hex(0x10000, 4))
    c.eq("SETUP_SIZE", d[0x17][0], le_hex(len(setup), 4))
    c.eq("CMDLINE_ADDR", d[0x13][0], le_hex(0x20000, 4))
    c.eq("CMDLINE_SIZE", d[0x14][0], le_hex(len(cmdline) + 1, 4))
    c.eq("CMDLINE_DATA", d[0x15][0][:2 * (len(cmdline) + 1)], (cmdline.encode() + b"\0").hex())
    # initrd: as high as it fits below the end of low RAM, page aligned (the kernel allows above 4G).
    addr = ((min(ram, 3 << 30) - 1 - len(initrd)) & ~0xfff)
    c.eq("INITRD_ADDR", d[0x0a][0], le_hex(addr, 4))
    c.eq("INITRD_SIZE", d[0x0b][0], le_hex(len(initrd), 4))
    c.eq("INITRD_DATA", d[0x12][1], bsum(initrd))
    # The setup header as a boot loader fills it in (boot.rst), printed from offset 0x1f0.
    hdr = bytearray(setup[0x1f0:0x270])
    hdr[0x210 - 0x1f0] = 0xb0                       # type_of_loader: QEMU
    hdr[0x211 - 0x1f0] |= 0x80                      # CAN_USE_HEAP
    struct.pack_into("<I", hdr, 0x218 - 0x1f0, addr)  # ramdisk_image
    struct.pack_into("<I", hdr, 0x21c - 0x1f0, len(initrd))
    struct.pack_into("<H", hdr, 0x224 - 0x1f0, 0x20000 - 0x10000 - 0x200)  # heap_end_ptr
    struct.pack_into("<I", hdr, 0x228 - 0x1f0, 0x20000)  # cmd_line_ptr
    if "vga=ext" in cmdline:
        struct.pack_into("<H", hdr, 0x1fa - 0x1f0, 0xfffe)
    c.eq("setup header", d[0x18][0], bytes(hdr).hex())
    if option_rom:
        path = b"/rom@genroms/linuxboot_dma.bin\0"
        c.eq("bootorder", (d.get("bootorder", ("",))[0], d.get("bootorder", (0, 0, 0))[2]),
             (first32(path), len(path)))
        c.eq("option ROM file", "genroms/linuxboot_dma.bin" in d, True)
    else:
        c.eq("bootorder size", d.get("bootorder", (0, 0, None))[2], 0)
        c.eq("no option ROM file", any(str(k).startswith("genroms/") for k in d), False)


def main():
    m86 = micro86_arg(__doc__, ("as", "ld"), "GNU binutils, to build the test firmware")
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="m86-fw-") as tmp:
        os.chdir(tmp)
        assemble("fw_cfg_dump.S", os.path.join(tmp, "dump.rom"))
        assemble("firmware_checks.S", os.path.join(tmp, "checks.rom"))
        assemble("multiboot_hello.S", os.path.join(tmp, "mb.elf"), ttext="0x100000", binary=False)
        assemble("multiboot_hello.S", os.path.join(tmp, "mb.bin"), defsyms=["AOUT=1"], ttext="0x100000")
        with open("mb.bin", "rb") as f:
            img = f.read()
        mb_entry = struct.unpack_from("<I", img, 28)[0]  # the header's entry_addr (header at offset 0)
        setup, kernel = make_bzimage("bz")
        initrd = bytes(random.Random(7).randrange(256) for _ in range(100 * 1024))
        with open("rd", "wb") as f:
            f.write(initrd)
        pvh = make_pvh_elf("vmlinux")
        with open("m1", "w") as f:
            f.write("module one\n")
        linuxboot = os.path.exists("/usr/share/qemu/linuxboot_dma.bin")
        cmdline = "console=ttyS0 quiet vga=ext"
        common = ["-bios", "dump.rom", "-no-reboot", "-nodefaults", "-serial", "stdio"]
        scenarios = [
            ("linux", ["-m", "512M", "-kernel", "bz", "-initrd", "rd", "-append", cmdline], 512 << 20, 1, 1,
             lambda c, d: check_linux(c, d, setup, kernel, initrd, cmdline, 512 << 20, linuxboot)),
            ("linux-x-option-roms=off", ["-M", "microvm,x-option-roms=off", "-m", "512M", "-kernel", "bz",
                                         "-initrd", "rd", "-append", cmdline], 512 << 20, 1, 1,
             lambda c, d: check_linux(c, d, setup, kernel, initrd, cmdline, 512 << 20, False)),
            ("4G-smp-nographic-no-rtc", ["-M", "microvm,rtc=off", "-m", "4G", "-smp", "2,maxcpus=4", "-nographic"],
             4 << 30, 2, 4, lambda c, d: c.eq("NOGRAPHIC", d[0x04][0], le_hex(1, 2))),
            ("pvh-elf", ["-m", "256M", "-kernel", "vmlinux", "-initrd", "rd", "-append", "console=ttyS0"],
             256 << 20, 1, 1,
             lambda c, d: (c.eq("KERNEL_ENTRY", d[0x10][0], le_hex(0x1000100, 4)),
                           c.eq("KERNEL_ADDR", d[0x07][0], le_hex(0x1000000, 4)),
                           c.eq("KERNEL_SIZE", d[0x08][0], le_hex(0x3000, 4)),
                           c.eq("SETUP_SIZE (the ELF's first 8 KiB)", d[0x17][0], le_hex(8192, 4)),
                           c.eq("SETUP_DATA", d[0x18][0], pvh[0x1f0:0x270].hex()),
                           c.eq("INITRD_ADDR", d[0x0a][0], le_hex(((256 << 20) - 1 - len(initrd)) & ~0xfff, 4)),
                           c.eq("CMDLINE_DATA", d[0x15][0][:28], b"console=ttyS0\0".hex()))),
            # (The a.out-kludge image: for an ELF kernel, QEMU leaves the gaps between segments in its
            # buffer uninitialised, so KERNEL_DATA would hold host heap bytes there.)
            ("multiboot", ["-m", "128M", "-kernel", "mb.bin", "-initrd", "m1 arg", "-append", "x y"], 128 << 20, 1, 1,
             lambda c, d: (c.eq("KERNEL_ADDR", d[0x07][0], le_hex(0x100000, 4)),
                           c.eq("KERNEL_ENTRY", d[0x10][0], le_hex(mb_entry, 4)),
                           c.eq("INITRD_ADDR (the multiboot info)", d[0x0a][0], le_hex(0x9500, 4)),
                           c.eq("INITRD_SIZE", d[0x0b][0], le_hex(88, 4)),
                           c.eq("CMDLINE_DATA", d[0x15][0][:8], b"x y\0".hex()))),
            # Two virtio-mmio devices: their transports in etc/fdt, and the command line items with
            # the devices appended (auto-kernel-cmdline) while the multiboot info keeps -append.
            ("multiboot+2 virtio", ["-m", "128M", "-kernel", "mb.bin", "-append", "x y", "-device", "virtio-rng-device",
                                    "-device", "virtio-rng-device"], 128 << 20, 1, 1,
             lambda c, d: c.eq("CMDLINE_DATA (first bytes, byte sum)", (d[0x15][0], d[0x15][1]),
                               (VIRTIO_CMD[:64].hex(),
                                bsum(VIRTIO_CMD)))),
        ]
        for name, args, ram, cpus, max_cpus, extra in scenarios:
            c = Checker("fw_cfg " + name)
            rc, out, err = run([m86, *common, *args])
            d = parse_dump(out)
            if rc != 0 or "FW-CFG-DUMP-END" not in out:
                c.failures.append(f"micro86 exit status {rc}, dump incomplete; stderr: {err.strip()[:300]}")
            else:
                check_common(c, d, ram, cpus, max_cpus)
                extra(c, d)
                if QEMU:
                    qrc, qout, qerr = run(qemu_argv(common + args))
                    if name == "pvh-elf":
                        # QEMU 7.2 keeps a pointer to x86_load_linux's stack buffer as the PVH "setup"
                        # item, so past its first few KiB it serves whatever the stack holds later
                        # (qboot only looks at the ELF magic there): compare the printed bytes only.
                        qout = re.sub(r"(KEY 0018:\w+) SUM \w+", r"\1", qout)
                        out = re.sub(r"(KEY 0018:\w+) SUM \w+", r"\1", out)
                    if qout != out:
                        ql, ml = qout.splitlines(), out.splitlines()
                        diffs = [f"qemu: {a} | micro86: {b}" for a, b in zip(ql, ml) if a != b]
                        if len(ql) != len(ml):
                            diffs.append(f"{len(ql)} lines from QEMU, {len(ml)} from micro86")
                        c.failures.append("differs from QEMU: " + "; ".join(diffs[:4]))
            ok = report(c.name + (" (same as QEMU)" if QEMU and not c.failures else ""), c.failures, out, tail=12)
            passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)

        # The firmware mapping and code coherence checks, on micro86 and QEMU.
        c = Checker("firmware aliases and code coherence")
        argv = ["-bios", "checks.rom", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x4", "-m", "64M",
                "-nodefaults", "-serial", "stdio"]
        rc, out, err = run([m86, *argv], timeout=30)
        c.eq("micro86 exit status (0x21 = all checks passed; else (check << 1) | 1)", rc, 0x21)
        c.eq("checks run", out.strip(), "1234567")
        if QEMU:
            qrc, qout, _ = run(qemu_argv(argv), timeout=30)
            c.eq("QEMU exit status on the same firmware", qrc, 0x21)
        ok = report(c.name, c.failures, out, tail=12)
        passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)

        # Errors and the fallback.
        c = Checker("firmware errors and fallback")
        with open("odd.rom", "wb") as f:
            f.write(b"\0" * 1000)
        rc, out, err = run([m86, "-bios", "odd.rom", "-nodefaults"], timeout=10)
        c.eq("odd-sized firmware refused", (rc, "64 KiB" in err), (1, True))
        rc, out, err = run([m86, "-bios", "no-such.rom", "-nodefaults"], timeout=10)
        c.eq("missing firmware refused", (rc, "no-such.rom" in err), (1, True))
        env = dict(os.environ, MICRO86_DATA_DIRS=os.path.join(tmp, "empty"))
        rc, out, err = run([m86, "-kernel", "mb.elf", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x4",
                            "-nodefaults", "-serial", "stdio"], timeout=30, env=env)
        c.eq("no qboot.rom: one message, then direct boot",
             (rc, err.count("qboot.rom"), "hello from multiboot" in out), (0x43, 1, True))
        ok = report(c.name, c.failures, out, tail=12)
        passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)

    if not QEMU:
        print("note: qemu-system-x86_64 is not installed; compared against the specifications only")
    print(f"firmware: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
