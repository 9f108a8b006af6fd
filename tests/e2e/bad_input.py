#!/usr/bin/env python3
"""Bad host input and careless command lines (issue 9, the host side): every case must end with one
clear error line on stderr, a non-zero exit, within a few seconds, and leave every user file as it
was. Needs no guest assets: the kernels are generated here (a few bytes of 32-bit code in a
multiboot a.out image). The truncated-bzImage cases cut the stock kernel from
scripts/guest-assets.sh (M86_KERNEL); without it they print SKIP (and are not counted as passed).

usage: bad_input.py MICRO86_BINARY
"""
import fcntl
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

MICRO86 = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build/micro86"
LIMIT = 5.0        # seconds: "within seconds"; each of these fails in well under one
failures, passes, skips = [], 0, 0

MB_MAGIC = 0x1BADB002
AOUT = 1 << 16     # multiboot header flag: the a.out address fields are valid
# 32-bit code: "hi\n" to COM1, then isa-debug-exit (port 0xf4) with 0 (exit status 1), then hlt.
HELLO = bytes.fromhex("baf8030000" "b068ee" "b069ee" "b00aee" "b000e6f4" "f4ebfd")
# The same without the exit: prints, then halts for ever (for the signal case).
HELLO_FOREVER = bytes.fromhex("baf8030000" "b068ee" "b069ee" "b00aee" "f4ebfd")


def aout_kernel(code, bss_end=0):
    """A multiboot a.out-kludge image loaded at 1 MiB: the header at offset 0, code at 0x20."""
    base = 0x100000
    hdr = struct.pack("<8I", MB_MAGIC, AOUT, (-(MB_MAGIC + AOUT)) & 0xffffffff,
                      base, base, 0, bss_end, base + 0x20)
    return hdr + code


def elf_two_segments():
    """The 144-byte multiboot ELF whose two PT_LOAD segments lie 2 GiB apart (issue 9)."""
    ehdr = struct.pack("<4s5B7xHHIIIIIHHHHHH", b"\x7fELF", 1, 1, 1, 0, 0,
                       2, 3, 1, 0x100074, 52, 0, 0, 52, 32, 2, 0, 0, 0)
    ph1 = struct.pack("<8I", 1, 0, 0x100000, 0x100000, 144, 144, 5, 0x1000)
    ph2 = struct.pack("<8I", 1, 0, 0x100000 + 0x80000000 - 16, 0x100000 + 0x80000000 - 16, 0, 16, 6, 0x1000)
    mbh = struct.pack("<3I", MB_MAGIC, 0, (-MB_MAGIC) & 0xffffffff)
    f = ehdr + ph1 + ph2 + mbh
    f += HELLO[:144 - len(f)].ljust(144 - len(f), b"\x90")
    assert len(f) == 144
    return f


def run(argv, stdin=subprocess.DEVNULL, timeout=LIMIT + 5, preexec=None):
    t = time.monotonic()
    try:
        p = subprocess.run([MICRO86] + argv, stdin=stdin, capture_output=True, timeout=timeout,
                           preexec_fn=preexec)
        return p.returncode, p.stderr.decode(errors="replace"), time.monotonic() - t
    except subprocess.TimeoutExpired:
        return "timeout", "", time.monotonic() - t


def snapshot(paths):
    return {p: (open(p, "rb").read() if os.path.isfile(p) else None) for p in paths}


def case(name, argv, expect, files=(), absent=(), preexec=None):
    """argv must fail: non-zero exit, one error line containing `expect`, in time, files unchanged
    and the `absent` files not created."""
    global passes
    before = snapshot(files)
    rc, err, secs = run(argv, preexec=preexec)
    lines = [l for l in err.splitlines() if l.startswith("micro86:") and "warning" not in l and "note:" not in l]
    problems = []
    if rc == "timeout" or secs > LIMIT:
        problems.append(f"took {secs:.1f} s (limit {LIMIT} s)")
    if rc == 0 or rc == "timeout":
        problems.append(f"exit status {rc}")
    if len(lines) != 1 or expect not in lines[0]:
        problems.append(f"expected one error line containing {expect!r}, got {err!r}")
    for p, data in before.items():
        now = open(p, "rb").read() if os.path.isfile(p) else None
        if now != data:
            problems.append(f"{p} changed ({'missing' if now is None else len(now)} bytes, was "
                            f"{'missing' if data is None else len(data)})")
    for p in absent:
        if os.path.exists(p):
            problems.append(f"{p} was created")
    if problems:
        failures.append(name)
        print(f"FAIL {name}: " + "; ".join(problems))
    else:
        passes += 1
        print(f"ok   {name}: {lines[0]}")


def check(name, ok, detail=""):
    global passes
    if ok:
        passes += 1
        print(f"ok   {name}")
    else:
        failures.append(name)
        print(f"FAIL {name}: {detail}")


def main():
    global skips
    tmp = tempfile.mkdtemp(prefix="m86-bad-")
    os.chdir(tmp)
    with open("hello.bin", "wb") as f:
        f.write(aout_kernel(HELLO))
    with open("forever.bin", "wb") as f:
        f.write(aout_kernel(HELLO_FOREVER))
    with open("bss.bin", "wb") as f:
        f.write(aout_kernel(HELLO, bss_end=0xffffffff).ljust(96, b"\x90"))
    with open("apart.elf", "wb") as f:
        f.write(elf_two_segments())
    with open("keep.txt", "wb") as f:
        f.write(b"precious user data\n")
    with open("disk.img", "wb") as f:
        f.write(b"\xa5" * 65536)
    os.mkfifo("fifo")
    boot = ["-m", "64M", "--direct-boot", "-nodefaults", "-device", "isa-debug-exit,iobase=0xf4,iosize=4"]

    # ---- outputs are opened only after every input was checked ----
    case("serial file kept on a start-up error", boot + ["-kernel", "hello.bin", "-serial", "file:keep.txt",
         "-append", "x", "-drive", "id=d,file=missing.img,format=raw,if=none"], "missing.img", ["keep.txt"])
    case("new serial file not created on a start-up error", boot + ["-kernel", "missing-kernel", "-serial",
         "file:new.txt"], "-kernel missing-kernel", absent=["new.txt"])
    case("serial file: the -kernel file", boot + ["-kernel", "hello.bin", "-serial", "file:hello.bin"],
         "also the input -kernel", ["hello.bin"])
    case("serial file: a -drive image", boot + ["-kernel", "hello.bin", "-serial", "file:disk.img",
         "-drive", "id=d,file=disk.img,format=raw,if=none"], "also the input -drive id=d", ["disk.img"])
    os.symlink("hello.bin", "alias.bin")
    case("chardev file: the -kernel under another name", boot + ["-kernel", "alias.bin", "-chardev",
         "file,id=c,path=hello.bin", "-device", "virtio-serial-device", "-device", "virtconsole,chardev=c"],
         "also the input -kernel", ["hello.bin"])
    case("two outputs on one file", boot + ["-kernel", "hello.bin", "-serial", "file:keep.txt", "-chardev",
         "file,id=c,path=keep.txt", "-device", "virtio-serial-device", "-device", "virtconsole,chardev=c"],
         "two outputs cannot share one file", ["keep.txt"])

    case("two outputs on one new file, spelled two ways", boot + ["-kernel", "hello.bin", "-serial", "file:new.txt",
         "-chardev", "file,id=c,path=./new.txt", "-device", "virtio-serial-device", "-device",
         "virtconsole,chardev=c"], "two outputs cannot share one file", absent=["new.txt"])

    case("serial file: a FIFO nobody reads", boot + ["-kernel", "hello.bin", "-serial", "file:fifo"],
         "a FIFO with no reader")

    # append=on appends; without it the file is replaced (after a successful start).
    with open("log.txt", "wb") as f:
        f.write(b"old\n")
    rc, err, secs = run(boot + ["-kernel", "hello.bin", "-chardev", "file,id=c,path=log.txt,append=on",
                                "-serial", "chardev:c"])
    data = open("log.txt", "rb").read()
    check("-chardev file,append=on appends", rc == 1 and data == b"old\nhi\n", f"rc {rc}, {data!r}, {err!r}")
    rc, err, secs = run(boot + ["-kernel", "hello.bin", "-chardev", "file,id=c,path=log.txt", "-serial", "chardev:c"])
    data = open("log.txt", "rb").read()
    check("-chardev file without append truncates", rc == 1 and data == b"hi\n", f"rc {rc}, {data!r}, {err!r}")

    # ---- inputs read with limits ----
    case("-kernel /dev/zero", ["-kernel", "/dev/zero"], "-kernel /dev/zero: is a character device")
    case("-kernel FIFO", ["-kernel", "fifo"], "-kernel fifo: is a FIFO")
    case("-initrd FIFO (a multiboot module)", boot + ["-kernel", "hello.bin", "-initrd", "fifo"],
         "multiboot module 'fifo': is a FIFO")
    case("-bios /dev/zero", ["-bios", "/dev/zero"], "-bios /dev/zero: is a character device")
    case("-kernel a directory", ["-kernel", tmp], "is a directory")
    case("multiboot a.out with bss_end_addr 0xffffffff (96 bytes)", ["-kernel", "bss.bin"],
         "-kernel bss.bin: multiboot kernel needs")
    case("multiboot a.out with bss_end_addr 0xffffffff, direct boot", boot + ["-kernel", "bss.bin"],
         "beyond the end of guest RAM")
    case("multiboot ELF with segments 2 GiB apart (144 bytes)", ["-kernel", "apart.elf"],
         "-kernel apart.elf: multiboot ELF kernel spans")

    # ---- drives ----
    drive = ["-device", "virtio-blk-device,drive=d0"]
    case("one image as two drives", boot + ["-kernel", "hello.bin", "-drive", "id=d0,file=disk.img,format=raw,if=none",
         "-drive", "id=d1,file=disk.img,format=raw,if=none"] + drive, "the same image is already given as -drive id=d0",
         ["disk.img"])
    case("/dev/zero as a drive", boot + ["-kernel", "hello.bin", "-drive", "id=d0,file=/dev/zero,format=raw,if=none"]
         + drive, "is a character device (a drive must be a regular file or a block device)")
    case("FIFO as a drive", boot + ["-kernel", "hello.bin", "-drive", "id=d0,file=fifo,format=raw,if=none"] + drive,
         "is a FIFO")

    # ---- truncated bzImage, on the firmware path and the direct path ----
    kernel = os.environ.get("M86_KERNEL")
    if not kernel:
        env = os.path.join(os.environ.get("M86_CACHE", os.path.expanduser("~/.cache/micro86")), "assets.env")
        if os.path.exists(env):
            for line in open(env):
                if line.startswith("M86_KERNEL="):
                    kernel = line.split("=", 1)[1].strip().strip('"')
    if kernel and os.path.exists(kernel):
        data = open(kernel, "rb").read()
        with open("cut.bzImage", "wb") as f:
            f.write(data[:len(data) // 2])
        case("truncated bzImage (firmware boot)", ["-kernel", "cut.bzImage", "-serial", "file:keep.txt"],
             "-kernel cut.bzImage: truncated bzImage", ["keep.txt"])
        case("truncated bzImage (direct boot)", ["--direct-boot", "-kernel", "cut.bzImage"],
             "-kernel cut.bzImage: truncated bzImage")
        case("-initrd FIFO (Linux)", ["-kernel", kernel, "-initrd", "fifo", "-serial", "file:keep.txt"],
             "-initrd fifo: is a FIFO", ["keep.txt"])
    else:
        skips += 3
        print("SKIP truncated bzImage: no M86_KERNEL (scripts/guest-assets.sh fetches it)")

    # ---- stdin's file status flags are restored (stdin a pipe, shared with this process) ----
    r, w = os.pipe()
    rc, err, secs = run(boot + ["-kernel", "hello.bin", "-serial", "stdio"], stdin=r)
    fl = fcntl.fcntl(r, fcntl.F_GETFL)
    check("stdin not left non-blocking at exit", rc == 1 and not fl & os.O_NONBLOCK, f"rc {rc}, flags {fl:#x}, {err!r}")
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        p = subprocess.Popen([MICRO86] + boot + ["-kernel", "forever.bin", "-serial", "stdio"], stdin=r,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        p.stdout.readline()  # "hi": it is running, stdin is non-blocking now
        p.send_signal(sig)
        try:
            p.wait(timeout=LIMIT)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        fl = fcntl.fcntl(r, fcntl.F_GETFL)
        check(f"stdin not left non-blocking after {signal.Signals(sig).name}", not fl & os.O_NONBLOCK,
              f"flags {fl:#x}, rc {p.returncode}")
        fcntl.fcntl(r, fcntl.F_SETFL, fl & ~os.O_NONBLOCK)
    os.close(r)
    os.close(w)

    # With the address space capped (as a CI container or ulimit -v might), guest RAM that cannot be
    # had is one line, not an abort. Not under AddressSanitizer, whose shadow memory needs the space.
    asan = b"asan" in subprocess.run(["ldd", MICRO86], capture_output=True).stdout
    if not asan:
        cap = lambda: resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        case("guest RAM beyond a capped address space", ["-m", "4G", "-kernel", "hello.bin", "-serial",
             "file:keep.txt"], "cannot allocate 4096 MiB of guest RAM", ["keep.txt"], preexec=cap)
        case("multiboot bss_end 0xffffffff, address space capped", ["-m", "512M", "-kernel", "bss.bin"],
             "beyond the end of guest RAM", preexec=cap)
    else:
        skips += 2
        print("SKIP capped address space: AddressSanitizer build")

    # -m beyond the host's memory: a warning, not a failure (the kernel is missing, so it stops).
    phys = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if phys < (1 << 40):
        rc, err, secs = run(["-m", "1T", "-kernel", "missing-kernel"])
        check("-m beyond host memory warns", "warning: -m" in err and rc != 0 and secs < LIMIT, repr(err))
    else:
        skips += 1
        print("SKIP -m beyond host memory: this host has 1 TiB or more")

    os.chdir("/")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passes} passed, {len(failures)} failed, {skips} skipped")
    if failures:
        print("failed: " + ", ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
