#!/usr/bin/env python3
"""End-to-end tests of the virtio-mmio devices (block, network, console, entropy) on micro86.

Scenarios (all by default):
  options   command-line errors: a missing disk image, unknown devices/properties/globals, a drive=
            that names no -drive (each must fail at start with a message naming the culprit)
  bad-ring  a bare-metal multiboot guest (virtio_bad_ring.S) feeds the virtio-blk transport a
            looping chain, an address outside RAM, a head past the table and an available index
            too far ahead, in both register layouts: the device must enter NEEDS_RESET each time,
            micro86 must keep running, and after a reset a good request must read the disk. The
            modern-layout output is compared with QEMU's microvm when qemu-system-x86_64 is installed.
  blk       virtio kernel + busybox initramfs, two disks and virtio-rng: the guest sees the
            auto-kernel-cmdline devices (same string format as QEMU's microvm, also compared with
            QEMU when installed), mounts the ext4 disk, checks a file the host put there, writes new
            files, syncs; the host finds them intact (debugfs) and the file system clean (e2fsck).
            The readonly=on disk refuses writes and is unchanged. /dev/hwrng yields data.
  net       -netdev user with a hostfwd rule: DHCP from slirp, an HTTP fetch from a server on the
            host's loopback (10.0.2.2 in the guest), and a host connection to a server in the guest.
  net-frag  IPv4 fragments through virtio-net and slirp (issue 19): a 4000-byte ping to 10.0.2.2 is
            answered; an 8 KiB UDP datagram reaches a host socket whole and 8 KiB come back; then
            net_guest.c (gcc -static, added to the initramfs) sends through a packet socket the frames
            that kill Debian 12's libslirp 4.7.0 unguarded (a lone last fragment first, other lone,
            overlapping and oversized IPv4 fragments, lone IPv6 fragments): micro86 keeps running and
            answers the next pings, fragmented ones included.
  idle      an idle guest with virtio devices (slirp without sockets) does not burn a host core.
  wakeup    deterministic time (-icount), 1500 small synchronous O_DIRECT reads from a virtio disk
            at -smp 1 and -smp 2: the completion interrupt wakes a halted vCPU at once, so the guest
            clock shows the burst costing about as much at -smp 2 as at -smp 1 (a lost wake-up
            leaves the vCPU halted until its next timer tick: milliseconds per read).
  reboot    a guest reboot (no -no-reboot) resets the devices: disk and network work
            again in the second boot; through qboot on the modern register layout (VERSION_1
            negotiated) and booted directly on the legacy one.
  rng       virtio-rng with -icount: a seeded generator (two runs print identical output); in
            realtime mode the host's entropy (different bytes).
  console   hvc0 on a terminal (a pty): typed input reaches the guest's shell, Ctrl-A x quits
            micro86 with status 0 and the terminal's modes are restored.
  doc1      QEMU's first microvm example command line (docs/system/i386/microvm.rst), binary name
            changed, root=/dev/vda on an ext4 test.img made here: its /sbin/init checks the disk
            and the network, writes a file, syncs; micro86 is then killed (SIGKILL) and the write
            must be in the image. -netdev tap stays where micro86 may create a tap interface (the
            test gives the host side an address; the guest a static one); elsewhere it is replaced
            by -netdev user (DHCP from slirp).
  doc2      QEMU's second example (all legacy devices off, console=hvc0 through -chardev stdio +
            virtconsole): the same checks, every line reaching stdout through hvc0.

Each scenario prints ok/FAIL lines; the last line is `e2e-virtio: N passed, M failed`.

usage: virtio.py MICRO86_BINARY [SCENARIO...]
Guest assets: M86_VIRTIO_KERNEL (else scripts/guest-kernel.sh, which builds it once) and
M86_INITRD (else scripts/guest-assets.sh). M86_VIRTIO_NO_TAP=1 runs the doc examples with
-netdev user even where a tap interface could be created.
"""
import base64
import contextlib
import hashlib
import http.server
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
from e2e_util import BAD, asset, assemble, micro86_arg, report

QEMU = shutil.which("qemu-system-x86_64")
EXIT_OK = (0x21 << 1) | 1


# ---- guest assets -----------------------------------------------------------------------------

def virtio_kernel():
    try:
        return asset("M86_VIRTIO_KERNEL", "guest-kernel.sh")
    except (subprocess.CalledProcessError, KeyError, FileNotFoundError) as e:
        print(f"note: no virtio guest kernel ({e})")
        return None


# ---- running micro86 (and QEMU) ---------------------------------------------------------------

class Run:
    """A running emulator whose output is collected in the background."""

    def __init__(self, argv, cwd=None):
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  cwd=cwd)
        self.buf, self.err = bytearray(), bytearray()
        self.cv = threading.Condition()
        self.t = [threading.Thread(target=self._pump, args=(self.p.stdout, self.buf), daemon=True),
                  threading.Thread(target=self._pump, args=(self.p.stderr, self.err), daemon=True)]
        for t in self.t:
            t.start()

    def _pump(self, f, dst):
        while True:
            b = f.read1(65536)
            if not b:
                break
            with self.cv:
                dst += b
                self.cv.notify_all()

    @property
    def out(self):
        with self.cv:
            return self.buf.decode(errors="replace").replace("\r", "")

    @property
    def stderr(self):
        with self.cv:
            return self.err.decode(errors="replace")

    def wait_for(self, text, timeout):
        return self.wait_re(re.escape(text), timeout)

    def wait_re(self, pattern, timeout):
        end = time.monotonic() + timeout
        rx = re.compile(pattern.encode())
        with self.cv:
            while not rx.search(self.buf):
                left = end - time.monotonic()
                if left <= 0 or (self.p.poll() is not None and not any(t.is_alive() for t in self.t)):
                    return False
                self.cv.wait(min(left, 0.5))
            return True

    def wait_exit(self, timeout):
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = "timeout"
        for t in self.t:
            t.join(5)
        return rc

    def kill(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait()


def run_to_end(argv, timeout, cwd=None):
    r = Run(argv, cwd)
    rc = r.wait_exit(timeout)
    return rc, r.out, r.stderr


# ---- host-side helpers --------------------------------------------------------------------------

def mkfs(path, tree, size="32M"):
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-d", tree, path, size], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def debugfs_cat(image, path):
    p = subprocess.run(["debugfs", "-R", f"cat {path}", image], capture_output=True)
    return p.stdout


def fsck_clean(image):
    return subprocess.run(["e2fsck", "-fn", image], capture_output=True).returncode == 0


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def http_server(directory, host="127.0.0.1", port=0):
    """An HTTP server on the host's loopback (the guest reaches it as 10.0.2.2 through slirp), or on
    a tap interface's address."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=directory, **kw)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer((host, port), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


# Shell snippets for the guest (busybox).
DHCP = r"""ifconfig lo up; ifconfig eth0 up
cat > /tmp/dh <<'X'
#!/bin/sh
[ "$1" = bound ] && ifconfig $interface $ip netmask $subnet && route add default gw $router
exit 0
X
chmod +x /tmp/dh
udhcpc -i eth0 -n -q -s /tmp/dh -t 5 >/dev/null 2>&1; echo DHCP=$?
echo IP=$(ifconfig eth0 | sed -n 's/.*inet addr:\([0-9.]*\).*/\1/p')
"""


def kernel_log_problems(out):
    return [l for l in out.splitlines() if BAD.search(l) and "ommand line:" not in l]


class Scenario:
    def __init__(self, name):
        self.name, self.failures, self.notes, self.out, self.err = name, [], [], "", ""

    def check(self, cond, what):
        if not cond:
            self.failures.append(what)
        return cond


# ---- scenarios ----------------------------------------------------------------------------------

def sc_options(m86, tmp, assets):
    sc = Scenario("options")
    kern = os.path.join(tmp, "k.elf")  # any kernel file; the errors come first
    open(kern, "wb").close()
    base = [m86, "-kernel", kern, "-nodefaults"]
    missing = os.path.join(tmp, "no-such-disk.img")
    unreadable = os.path.join(tmp, "dir-not-image")
    os.makedirs(unreadable, exist_ok=True)
    cases = [
        ("missing image", ["-drive", f"id=d0,file={missing},format=raw,if=none", "-device", "virtio-blk-device,drive=d0"],
         [missing, "No such file"]),
        ("directory as image", ["-drive", f"id=d0,file={unreadable},format=raw,if=none",
                                "-device", "virtio-blk-device,drive=d0"], [unreadable]),
        ("unknown device", ["-device", "virtio-gpu-device"], ["virtio-gpu-device"]),
        ("unknown property", ["-device", "virtio-rng-device,frobnicate=1"], ["frobnicate"]),
        ("drive= names no -drive", ["-device", "virtio-blk-device,drive=nope"], ["nope"]),
        ("unknown netdev type", ["-netdev", "socket,id=n0"], ["socket"]),
        ("unknown global", ["-global", "virtio-mmio.frob=1"], ["frob"]),
        ("qcow2 image", ["-drive", f"id=d0,file={kern},format=qcow2,if=none"], ["qcow2"]),
        ("virtconsole without bus", ["-chardev", "stdio,id=c0", "-device", "virtconsole,chardev=c0"],
         ["virtio-serial-device"]),
        ("ninth transport", sum((["-device", "virtio-rng-device"] for _ in range(9)), []), ["virtio-rng-device"]),
    ]
    for what, args, needles in cases:
        rc, out, err = run_to_end(base + args, 20)
        ok = rc not in (0, "timeout") and all(n in err for n in needles) and err.count("\n") <= 3
        sc.check(ok, f"{what}: exit status {rc}, stderr {err.strip()[:200]!r} (wanted an error naming {needles})")
    return sc


def sc_bad_ring(m86, tmp, assets):
    sc = Scenario("bad-ring")
    assemble("virtio_bad_ring.S", os.path.join(tmp, "br.elf"), ttext="0x100000", binary=False)
    disk = os.path.join(tmp, "br.img")
    with open(disk, "wb") as f:
        # Sector 0: a signature, then `mov $0x22222222, %eax; ret` (the guest runs it after the read).
        f.write(b"M86-DISK-SECTOR0" + bytes.fromhex("b822222222c3") + bytes(1024 * 1024 - 22))
    args = ["-kernel", "br.elf", "-nodefaults", "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x4",
            "-drive", "id=d,file=br.img,format=raw,if=none", "-device", "virtio-blk-device,drive=d"]
    for legacy in ("true", "false"):
        lay = ["-global", f"virtio-mmio.force-legacy={legacy}"]
        rc, out, err = run_to_end([m86, "--direct-boot", *args, *lay], 60, cwd=tmp)
        sc.out += out
        sc.err += err
        version = 1 if legacy == "true" else 2
        # Status after an error: ACKNOWLEDGE|DRIVER|DRIVER_OK (+ FEATURES_OK, modern) | NEEDS_RESET
        # (virtio 1.x 2.1); after the reset, 0; the good read: used index 1, VIRTIO_BLK_S_OK.
        st = 0x47 if version == 1 else 0x4f
        want = ["virtio bad-ring test", f"magic={0x74726976:08x} device_id={2:08x}", f"version={version:08x}"]
        for case in ("loop", "outside", "head", "avail"):
            want += [f"{case}: status={st:08x}", f"after reset: status={0:08x}"]
        want += [f"read: used_idx={1:08x} status={0:08x} data=M86-DISK-SECTOR0",
                 f"code: before={0x11111111:08x} after={0x22222222:08x}", "bye"]
        got = [l for l in out.splitlines() if l]
        sc.check(rc == EXIT_OK, f"legacy={legacy}: exit status {rc}, expected {EXIT_OK} (the guest ran to its end)")
        for w, g in zip(want, got + [""] * len(want)):
            if w != g:
                sc.check(False, f"legacy={legacy}: expected {w!r}, got {g!r}")
                break
        sc.check(err.count("device needs reset") == 4,
                 f"legacy={legacy}: expected 4 logged NEEDS_RESET messages, stderr: {err.strip()[:300]!r}")
        if QEMU and legacy == "false":
            qrc, qout, _ = run_to_end([QEMU, "-M", "microvm,acpi=off", "-accel", "tcg", "-display", "none",
                                       *args, *lay], 60, cwd=tmp)
            # QEMU bounces DMA to addresses outside RAM through unassigned memory instead of
            # failing the request (micro86 treats it as the driver error it is): skip that line.
            skip = lambda text: [l for l in text.splitlines() if l and not l.startswith("outside:")]
            if sc.check((qrc, skip(qout)) == (rc, skip(out)),
                        f"modern layout differs from QEMU's microvm (QEMU status {qrc}, output {qout[-300:]!r})"):
                sc.notes.append("same as QEMU")
    return sc


def boot_args(kernel, initrd, script, extra_append=""):
    b64 = base64.b64encode(script.encode()).decode()
    append = f"console=ttyS0 reboot=t panic=-1 {extra_append}m86.run64={b64}"
    return ["-m", "256M", "-kernel", kernel, "-initrd", initrd, "-append", append, "-no-reboot", "-nodefaults",
            "-serial", "stdio"]


def sc_blk(m86, tmp, assets):
    sc = Scenario("blk")
    kernel, initrd = assets
    token = hashlib.sha256(str(time.time()).encode()).hexdigest()[:16]
    tree, rotree = os.path.join(tmp, "blk-tree"), os.path.join(tmp, "ro-tree")
    os.makedirs(tree, exist_ok=True)
    os.makedirs(rotree, exist_ok=True)
    with open(os.path.join(tree, "hello.txt"), "w") as f:
        f.write(f"hello {token}\n")
    with open(os.path.join(rotree, "ro.txt"), "w") as f:
        f.write("read-only disk\n")
    with open(os.path.join(tree, "junk.bin"), "wb") as f:  # deleted and trimmed by the guest
        f.write(os.urandom(4 << 20))
    img, roimg = os.path.join(tmp, "test.img"), os.path.join(tmp, "ro.img")
    mkfs(img, tree)
    mkfs(roimg, rotree, "8M")
    allocated_before = os.stat(img).st_blocks * 512
    ro_before = sha256(roimg)
    seq = "".join(f"{i}\n" for i in range(1, 150001)).encode()  # ~1 MB, many sectors
    script = f"""echo CMDLINE=$(cat /proc/cmdline | tr ' ' '\\n' | grep virtio_mmio | tr '\\n' ' ')
mount -t ext4 /dev/vda /mnt && echo MOUNTED
echo READ=$(cat /mnt/hello.txt)
mkdir -p /mnt/sub && echo "written by the guest {token}" > /mnt/sub/new.txt
seq 1 150000 > /mnt/seq.txt
rm /mnt/junk.bin; sync
echo DISCARD_MAX=$(cat /sys/block/vda/queue/discard_max_bytes)
fstrim /mnt; echo FSTRIM=$?
sync; umount /mnt && echo UNMOUNTED
echo RO=$(blockdev --getro /dev/vdb)
mkdir -p /mnt2; mount -t ext4 -o ro /dev/vdb /mnt2 && echo RO-READ=$(cat /mnt2/ro.txt)
touch /mnt2/x 2>/dev/null; echo RO-TOUCH=$?
dd if=/dev/zero of=/dev/vdb bs=4096 count=1 oflag=direct 2>/dev/null; echo RO-DD=$?
umount /mnt2
echo RNG=$(cat /sys/class/misc/hw_random/rng_current)
echo HWRNG=$(dd if=/dev/hwrng bs=16 count=1 2>/dev/null | od -An -tx1 | tr -d ' \\n')
"""
    devs = ["-drive", f"id=d0,file={img},format=raw,if=none", "-device", "virtio-blk-device,drive=d0",
            "-device", "virtio-rng-device",
            "-drive", f"id=d1,file={roimg},format=raw,if=none,readonly=on", "-device", "virtio-blk-device,drive=d1"]
    rc, out, err = run_to_end([m86, *boot_args(kernel, initrd, script), *devs], 300)
    sc.out, sc.err = out, err
    sc.check(rc == 0, f"micro86 exit status {rc} (expected 0 after the guest's reboot)")
    sc.check("M86-RUN-DONE" in out, "the guest script did not finish")
    # QEMU's microvm: the first device in the highest slot (0xfeb00e00, IRQ 12), then downwards;
    # listed highest slot first.
    suffix = ("virtio_mmio.device=512@0xfeb00e00:12 virtio_mmio.device=512@0xfeb00c00:11 "
              "virtio_mmio.device=512@0xfeb00a00:10")
    sc.check(f"CMDLINE={suffix}" in out, f"auto-kernel-cmdline devices are not {suffix!r}")
    sc.check("MOUNTED" in out and f"READ=hello {token}" in out, "the guest did not read the host's file")
    sc.check("UNMOUNTED" in out, "umount failed")
    sc.check("RO=1" in out, "the readonly=on disk is not read-only in the guest")
    sc.check("RO-READ=read-only disk" in out, "the read-only disk could not be read")
    sc.check("RO-TOUCH=1" in out, "writing a file on the read-only disk did not fail")
    sc.check(re.search(r"RO-DD=[1-9]", out) is not None, "a raw write to the read-only disk did not fail")
    m = re.search(r"HWRNG=([0-9a-f]*)", out)
    sc.check("RNG=virtio_rng.0" in out, "the guest's hw_random is not virtio_rng")
    sc.check(m is not None and len(m.group(1)) == 32 and int(m.group(1), 16) != 0,
             f"/dev/hwrng gave {m.group(1) if m else None!r}, expected 16 random bytes")
    sc.check(debugfs_cat(img, "/sub/new.txt") == f"written by the guest {token}\n".encode(),
             "the guest's new file is not intact in the image")
    sc.check(debugfs_cat(img, "/seq.txt") == seq, "the guest's 1 MB file differs from the host's seq 1 150000")
    sc.check(fsck_clean(img), "e2fsck finds the image unclean")
    m = re.search(r"DISCARD_MAX=(\d+)", out)
    if m and int(m.group(1)) > 0:
        # The guest's fstrim punched the 4 MiB the deleted file held (less the ~1 MB it wrote).
        freed = allocated_before - os.stat(img).st_blocks * 512
        sc.check("FSTRIM=0" in out, "fstrim failed in the guest")
        sc.check(freed >= 2 << 20, f"fstrim freed {freed} bytes of the image, expected at least 2 MiB")
        sc.notes.append("discard")
    else:
        sc.notes.append("no discard: the host file system cannot punch holes")
    sc.check(sha256(roimg) == ro_before, "the read-only image changed")
    bad = kernel_log_problems(out)
    sc.check(not bad, "kernel log has: " + "; ".join(bad[:3]))
    if QEMU:
        # The kernel command line QEMU's microvm gives the same kernel with the same devices.
        qargs = [QEMU, "-M", "microvm,acpi=off", "-accel", "tcg", "-display", "none", "-m", "256M", "-kernel", kernel,
                 "-append", "console=ttyS0 m86", "-nodefaults", "-serial", "stdio", "-no-reboot", *devs]
        r = Run(qargs)
        r.wait_re(r"Kernel command line: [^\n]*\n", 60)
        r.kill()
        r.wait_exit(5)
        q = re.search(r"Kernel command line: (.*)", r.out)
        mine = f"console=ttyS0 m86 {suffix}"
        if sc.check(q is not None and q.group(1).strip() == mine,
                    f"QEMU's kernel command line is {q.group(1) if q else None!r}, micro86's would be {mine!r}"):
            sc.notes.append("command line same as QEMU")
    return sc


def sc_net(m86, tmp, assets):
    sc = Scenario("net")
    kernel, initrd = assets
    token, gtoken, htoken = (hashlib.sha256(f"{time.time()}{i}".encode()).hexdigest()[:12] for i in range(3))
    www = os.path.join(tmp, "www")
    os.makedirs(www, exist_ok=True)
    with open(os.path.join(www, "page.txt"), "w") as f:
        f.write(f"page {token}\n")
    hostport = free_port()
    with http_server(www) as port:
        script = DHCP + f"""echo PAGE=$(wget -q -O - http://10.0.2.2:{port}/page.txt)
echo "guest {gtoken}" > /tmp/reply
nc -l -p 8000 < /tmp/reply > /tmp/got &
sleep 1; echo HOSTFWD-LISTENING
wait; echo NC-GOT=$(cat /tmp/got)
cat /proc/interrupts | grep virtio
"""
        devs = ["-netdev", f"user,id=n0,hostfwd=tcp::{hostport}-:8000", "-device", "virtio-net-device,netdev=n0"]
        r = Run([m86, *boot_args(kernel, initrd, script), *devs])
        reply = b""
        if r.wait_for("HOSTFWD-LISTENING", 240):
            for _ in range(20):
                try:
                    with socket.create_connection(("127.0.0.1", hostport), timeout=10) as s:
                        s.sendall(f"host {htoken}\n".encode())
                        end = time.monotonic() + 10
                        while gtoken.encode() not in reply and time.monotonic() < end:
                            b = s.recv(4096)
                            if not b:
                                break
                            reply += b
                except OSError:
                    pass
                if gtoken.encode() in reply:
                    break
                time.sleep(0.5)
        rc = r.wait_exit(120)
    out = sc.out = r.out
    sc.err = r.stderr
    sc.check(rc == 0, f"micro86 exit status {rc} (expected 0 after the guest's reboot)")
    sc.check("DHCP=0" in out and "IP=10.0.2.15" in out, "no DHCP lease 10.0.2.15 from slirp")
    sc.check(f"PAGE=page {token}" in out, "the guest did not fetch the page from the host's HTTP server")
    sc.check(f"guest {gtoken}".encode() in reply, f"the host got {reply!r} through hostfwd, not the guest's reply")
    sc.check(f"NC-GOT=host {htoken}" in out, "the guest server did not receive the host's line")
    sc.check(re.search(r"IO-APIC\s+12-edge\s+virtio0", out) is not None, "no virtio-net interrupts on IRQ 12")
    bad = kernel_log_problems(out)
    sc.check(not bad, "kernel log has: " + "; ".join(bad[:3]))
    return sc


def initrd_with(initrd, tmp, files):
    """A copy of the busybox initramfs with `files` ({path in the guest: host file}) added: a second
    cpio archive appended to the first (the kernel unpacks them in turn)."""
    tree = os.path.join(tmp, "initrd-extra")
    shutil.rmtree(tree, ignore_errors=True)
    for dest, src in files.items():
        os.makedirs(os.path.join(tree, os.path.dirname(dest)), exist_ok=True)
        shutil.copy(src, os.path.join(tree, dest))
    extra = subprocess.run("find . | cpio -o -H newc --quiet | gzip -1", shell=True, cwd=tree, check=True,
                           capture_output=True).stdout
    out = os.path.join(tmp, "initrd-plus.cpio.gz")
    with open(initrd, "rb") as f, open(out, "wb") as g:
        g.write(f.read() + extra)
    return out


@contextlib.contextmanager
def udp_reverser():
    """A UDP socket on the host's loopback that answers each datagram with its bytes reversed."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.5)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                data, peer = s.recvfrom(65536)
            except socket.timeout:
                continue
            s.sendto(data[::-1], peer)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield s.getsockname()[1]
    finally:
        stop.set()
        t.join(2)
        s.close()


def sc_net_frag(m86, tmp, assets):
    sc = Scenario("net-frag")
    kernel, initrd = assets
    prog = os.path.join(tmp, "net_guest")
    cc = subprocess.run(["gcc", "-static", "-O2", "-o", prog, os.path.join(os.path.dirname(__file__), "net_guest.c")],
                        capture_output=True, text=True)
    if not sc.check(cc.returncode == 0, f"gcc -static net_guest.c failed: {cc.stderr.strip()[-300:]}"):
        return sc
    initrd = initrd_with(initrd, tmp, {"bin/net_guest": prog})
    pings = 'ping -c 3 -s 4000 10.0.2.2 | grep transmitted | sed "s/^/PING4000-$1: /"'
    with udp_reverser() as port:
        script = DHCP + f"""p() {{ {pings}; }}
p before
net_guest udp8k 10.0.2.2 {port}
net_guest frags
sleep 1
ping -c 1 -W 5 10.0.2.2 >/dev/null && echo PING-AFTER=ok
p after
"""
        rc, out, err = run_to_end([m86, *boot_args(kernel, initrd, script),
                                   "-netdev", "user,id=n0", "-device", "virtio-net-device,netdev=n0"], 300)
    sc.out, sc.err = out, err
    sc.check(rc == 0, f"micro86 exit status {rc} (expected 0 after the guest's reboot; negative = killed by a signal)")
    sc.check("DHCP=0" in out and "IP=10.0.2.15" in out, "no DHCP lease 10.0.2.15 from slirp")
    for when in ("before", "after"):
        sc.check(f"PING4000-{when}: 3 packets transmitted, 3 packets received" in out,
                 f"ping -s 4000 10.0.2.2 (three fragments each way) {when} the bad fragments did not get 3 of 3 answers")
    sc.check("UDP8K=ok" in out, "the 8 KiB UDP exchange with the host failed")
    sc.check("FRAGS-SENT=9" in out, "net_guest did not send its 9 fragments")
    sc.check("PING-AFTER=ok" in out, "no answer to a ping after the lone fragments")
    bad = kernel_log_problems(out)
    sc.check(not bad, "kernel log has: " + "; ".join(bad[:3]))
    return sc


ROOT_INIT = r"""#!/bin/sh
# /sbin/init of the doc-example root file system (tests/e2e/virtio.py).
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -o remount,rw / && echo ROOT-RW
echo HELLO=$(cat /hello.txt)
echo "written by the guest $(cat /token)" > /new.txt
if [ -f /static ]; then
  # -netdev tap: a static address on the tap's subnet; wait until the host answers.
  read ip host < /static
  ifconfig lo up; ifconfig eth0 $ip netmask 255.255.255.0 up
  i=0; while [ $i -lt 60 ] && ! ping -c 1 -W 1 $host >/dev/null 2>&1; do i=$((i+1)); done
  echo IP=$(ifconfig eth0 | sed -n 's/.*inet addr:\([0-9.]*\).*/\1/p')
else
""" + DHCP + r"""  host=10.0.2.2
fi
echo PAGE=$(wget -q -O - http://$host:$(cat /port)/page.txt)
echo CONSOLE=$(cat /sys/class/tty/console/active)
sync
echo M86-DOC-DONE
poweroff -f
"""


def tap_permitted(m86, tmp):
    """Whether micro86 may create a tap interface here (None) or why not (a string)."""
    if os.environ.get("M86_VIRTIO_NO_TAP"):
        return "M86_VIRTIO_NO_TAP is set"
    if not shutil.which("ip"):
        return "no 'ip' command (iproute2) to configure the host side"
    rc, out, err = run_to_end([m86, "-kernel", os.path.join(tmp, "no-such-kernel"), "-nodefaults",
                               "-netdev", "tap,id=t0,script=no,downscript=no"], 20)
    return err.strip() if "-netdev tap" in err else None


def links():
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {l.split(":")[1].strip().split("@")[0] for l in out.splitlines() if ":" in l}


def doc_example(m86, tmp, assets, which):
    """QEMU's microvm documentation examples with the binary's name changed; -netdev tap is kept
    where micro86 may create a tap interface (the test configures the host side), else replaced by
    -netdev user."""
    sc = Scenario(f"doc{which}")
    kernel, initrd = assets
    token = hashlib.sha256(f"{time.time()}doc".encode()).hexdigest()[:16]
    why_not_tap = tap_permitted(m86, tmp)
    tap = why_not_tap is None
    subnet = f"10.254.{20 + os.getpid() % 200}"
    tree = os.path.join(tmp, f"root{which}")
    shutil.rmtree(tree, ignore_errors=True)
    os.makedirs(tree)
    # The busybox tree of the initramfs, with our /sbin/init instead of its /init.
    with open(initrd, "rb") as f:
        subprocess.run("gzip -dc | cpio -idm --quiet", shell=True, stdin=f, cwd=tree, check=True)
    os.remove(os.path.join(tree, "init"))
    os.makedirs(os.path.join(tree, "sbin"), exist_ok=True)
    files = {"sbin/init": ROOT_INIT, "hello.txt": f"hello {token}\n", "token": token + "\n"}
    port = free_port()
    files["port"] = f"{port}\n"
    if tap:
        files["static"] = f"{subnet}.2 {subnet}.1\n"
    for name, text in files.items():
        with open(os.path.join(tree, name), "w") as f:
            f.write(text)
    os.chmod(os.path.join(tree, "sbin", "init"), 0o755)
    www = os.path.join(tmp, "www")
    os.makedirs(www, exist_ok=True)
    with open(os.path.join(www, "page.txt"), "w") as f:
        f.write(f"page {token}\n")
    img = os.path.join(tmp, "test.img")
    mkfs(img, tree, "64M")
    netdev = "tap,id=tap0,script=no,downscript=no" if tap else "user,id=tap0"
    if which == 1:
        argv = [m86, "-M", "microvm",
                "-enable-kvm", "-cpu", "host", "-m", "512m", "-smp", "2",
                "-kernel", kernel, "-append", "earlyprintk=ttyS0 console=ttyS0 root=/dev/vda",
                "-nodefaults", "-no-user-config", "-nographic",
                "-serial", "stdio",
                "-drive", "id=test,file=test.img,format=raw,if=none",
                "-device", "virtio-blk-device,drive=test",
                "-netdev", netdev,
                "-device", "virtio-net-device,netdev=tap0"]
    else:
        argv = [m86,
                "-M", "microvm,x-option-roms=off,pit=off,pic=off,isa-serial=off,rtc=off",
                "-enable-kvm", "-cpu", "host", "-m", "512m", "-smp", "2",
                "-kernel", kernel, "-append", "console=hvc0 root=/dev/vda",
                "-nodefaults", "-no-user-config", "-nographic",
                "-chardev", "stdio,id=virtiocon0",
                "-device", "virtio-serial-device",
                "-device", "virtconsole,chardev=virtiocon0",
                "-drive", "id=test,file=test.img,format=raw,if=none",
                "-device", "virtio-blk-device,drive=test",
                "-netdev", netdev,
                "-device", "virtio-net-device,netdev=tap0"]
    before = links() if tap else set()
    r = Run(argv, cwd=tmp)
    host = "127.0.0.1"
    if tap:
        # The kernel names the interface (tapN): find it and give the host side its address.
        new, end = set(), time.monotonic() + 20
        while not new and time.monotonic() < end and r.p.poll() is None:
            time.sleep(0.1)
            new = {n for n in links() - before if n.startswith("tap")}
        if sc.check(len(new) == 1, f"no new tap interface appeared (saw {sorted(new)})"):
            ifname = new.pop()
            subprocess.run(["ip", "addr", "add", f"{subnet}.1/24", "dev", ifname], check=True)
            subprocess.run(["ip", "link", "set", ifname, "up"], check=True)
            host = f"{subnet}.1"
            sc.notes.append(f"-netdev tap ({ifname})")
    else:
        sc.notes.append(f"-netdev user: {why_not_tap[:70]}")
    try:
        with http_server(www, host, port):
            done = r.wait_for("M86-DOC-DONE", 300)
            time.sleep(0.5)
    except OSError as e:
        done = sc.check(False, f"cannot serve HTTP on {host}:{port}: {e}")
    r.kill()  # the guest synced before the marker: its writes must survive a SIGKILL
    r.wait_exit(10)
    out = sc.out = r.out
    sc.err = r.stderr
    sc.check(done, "the root file system's init did not finish")
    sc.check("ROOT-RW" in out, "remounting /dev/vda read-write failed")
    sc.check(f"HELLO=hello {token}" in out, "the guest did not read the host's file on the root disk")
    if tap:
        sc.check(f"IP={subnet}.2" in out, "the guest's static address on the tap network is not set")
    else:
        sc.check("DHCP=0" in out and "IP=10.0.2.15" in out, "no DHCP lease from slirp")
    sc.check(f"PAGE=page {token}" in out, f"the guest did not fetch the page from the host ({host})")
    console = "ttyS0" if which == 1 else "hvc0"
    sc.check(f"CONSOLE={console}" in out, f"the guest's console is not {console}")
    sc.check(debugfs_cat(img, "/new.txt") == f"written by the guest {token}\n".encode(),
             "the guest's file is not intact in the image after micro86 was killed")
    bad = kernel_log_problems(out)
    sc.check(not bad, "kernel log has: " + "; ".join(bad[:3]))
    return sc


def sc_console(m86, tmp, assets):
    """hvc0 as an interactive console on a terminal: input reaches the guest shell, Ctrl-A x quits
    micro86, and the terminal's modes are restored."""
    import pty
    import termios
    sc = Scenario("console")
    kernel, initrd = assets
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    argv = [m86, "-M", "microvm,isa-serial=off", "-m", "256M", "-nodefaults", "-kernel", kernel, "-initrd", initrd,
            "-append", "console=hvc0 quiet", "-chardev", "stdio,id=con", "-device", "virtio-serial-device",
            "-device", "virtconsole,chardev=con"]
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    buf = bytearray()

    def read_until(pattern, timeout):
        end = time.monotonic() + timeout
        while not re.search(pattern, buf) and time.monotonic() < end:
            import select
            if select.select([master], [], [], 0.2)[0]:
                try:
                    buf.extend(os.read(master, 65536))
                except OSError:
                    break
        return re.search(pattern, buf) is not None

    ready = read_until(rb"M86-USERSPACE-READY", 120)
    sc.check(ready, "no userspace marker on hvc0")
    if ready:
        time.sleep(1)
        os.write(master, b"echo $((6*7))-TYPED\n")
        sc.check(read_until(rb"42-TYPED", 30), "what was typed on the terminal did not reach the guest's shell on hvc0")
        os.write(master, b"\x01x")  # Ctrl-A x
    try:
        rc = p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = "timeout"
    sc.check(rc == 0, f"Ctrl-A x: micro86 exit status {rc}, expected 0")
    after = termios.tcgetattr(master)
    sc.check(after[3] == before[3] and after[0] == before[0], "the terminal modes were not restored")
    os.close(master)
    sc.out = buf.decode(errors="replace").replace("\r", "")
    sc.err = p.stderr.read().decode(errors="replace")
    return sc


def sc_rng(m86, tmp, assets):
    """virtio-rng in deterministic mode (-icount): a seeded generator, so two runs print the same
    bytes (the whole serial output is identical); in realtime mode the bytes come from the host."""
    sc = Scenario("rng")
    kernel, initrd = assets
    script = "echo HWRNG=$(dd if=/dev/hwrng bs=32 count=1 2>/dev/null | od -An -tx1 | tr -d ' \\n')\n"
    argv = [m86, *boot_args(kernel, initrd, script), "-device", "virtio-rng-device"]
    runs = [run_to_end(argv + ["-icount", "shift=0"], 300) for _ in range(2)] + [run_to_end(argv, 300)]
    vals = []
    for rc, out, err in runs:
        sc.out += out
        sc.err += err
        m = re.search(r"HWRNG=([0-9a-f]*)", out)
        vals.append(m.group(1) if m else "")
        sc.check(rc == 0, f"micro86 exit status {rc}")
    sc.check(all(len(v) == 64 and int(v, 16) != 0 for v in vals), f"/dev/hwrng gave {vals}, expected 32 bytes each")
    sc.check(runs[0][1] == runs[1][1], "two -icount runs printed different output")
    sc.check(vals[2] != vals[0], "realtime mode gave the deterministic mode's bytes")
    return sc


def sc_reboot(m86, tmp, assets):
    """A guest reboot without -no-reboot resets the virtio devices with the machine: the disk and the
    network work again in the next boot. Twice: through qboot (which reloads the kernel from fw_cfg)
    on the modern register layout (force-legacy=false: the drivers must negotiate VIRTIO_F_VERSION_1,
    feature bit 32), and booted directly on the legacy layout (no VERSION_1)."""
    sc = Scenario("reboot")
    kernel, initrd = assets
    img = os.path.join(tmp, "reboot.img")
    with open(img, "wb") as f:
        f.write(b"reboot-disk-signature".ljust(512, b"\0") + bytes(1 << 20))
    script = DHCP + "echo DISK=$(head -c 21 /dev/vda)\necho V1=$(cut -c33 /sys/bus/virtio/devices/virtio*/features)\n"
    for boot, legacy in (([], "false"), (["--direct-boot"], "true")):
        what = f"{'direct boot' if boot else 'qboot'}, force-legacy={legacy}"
        argv = [m86, *boot, *[a for a in boot_args(kernel, initrd, script) if a != "-no-reboot"],
                "-drive", f"id=d0,file={img},format=raw,if=none", "-device", "virtio-blk-device,drive=d0",
                "-netdev", "user,id=n0", "-device", "virtio-net-device,netdev=n0",
                "-global", f"virtio-mmio.force-legacy={legacy}"]
        r = Run(argv)
        ok = r.wait_re(r"(?s)M86-RUN-DONE.*M86-RUN-DONE", 300)
        r.kill()
        r.wait_exit(10)
        out = r.out
        sc.out += out
        sc.err += r.stderr
        sc.check(ok, f"{what}: the guest did not boot twice")
        sc.check(out.count("DISK=reboot-disk-signature") == 2, f"{what}: the disk was not read in both boots")
        sc.check(out.count("IP=10.0.2.15") == 2, f"{what}: no DHCP lease in both boots")
        v1 = "1 1" if legacy == "false" else "0 0"
        sc.check(out.count(f"V1={v1}") == 2, f"{what}: VIRTIO_F_VERSION_1 negotiation is not {v1!r} in both boots")
        bad = kernel_log_problems(out)
        sc.check(not bad, f"{what}: kernel log has: " + "; ".join(bad[:3]))
    return sc


def cpu_seconds(pid):
    """User + system CPU time of a running process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sc_idle(m86, tmp, assets):
    """An idle guest with a network device (slirp with no open socket) and a console does not burn a
    host core: micro86 sleeps in its poll until a timer, a frame or input is due."""
    sc = Scenario("idle")
    kernel, initrd = assets
    script = "ifconfig eth0 up; echo IDLE-START; sleep 4; echo IDLE-END\n"
    argv = [m86, *boot_args(kernel, initrd, script), "-netdev", "user,id=n0", "-device", "virtio-net-device,netdev=n0",
            "-device", "virtio-serial-device", "-device", "virtio-rng-device"]
    r = Run(argv)
    cpu = None
    if sc.check(r.wait_for("IDLE-START", 120), "the guest did not start idling"):
        c0, t0 = cpu_seconds(r.p.pid), time.monotonic()
        if sc.check(r.wait_for("IDLE-END", 60), "the guest did not wake up after its sleep"):
            cpu = (cpu_seconds(r.p.pid) - c0) / (time.monotonic() - t0)
    rc = r.wait_exit(60)
    sc.out, sc.err = r.out, r.stderr
    sc.check(rc == 0, f"micro86 exit status {rc}")
    if cpu is not None:
        sc.check(cpu < 0.3, f"micro86 used {cpu:.0%} of a host core while the guest slept")
        sc.notes.append(f"{cpu:.0%} of a core while idle")
    return sc


def sc_wakeup(m86, tmp, assets):
    sc = Scenario("wakeup")
    kernel, initrd = assets
    img = os.path.join(tmp, "wakeup.img")
    with open(img, "wb") as f:
        f.write(os.urandom(8 << 20))
    # /proc/uptime has 10 ms steps: time the burst as centiseconds of guest time.
    script = """up() { awk '{ printf "%d", $1 * 100 }' /proc/uptime; }
dd if=/dev/vda of=/dev/null bs=4096 count=16 iflag=direct 2>/dev/null
t0=$(up); dd if=/dev/vda of=/dev/null bs=4096 count=1500 iflag=direct 2>/dev/null; t1=$(up)
echo READS-CS=$((t1 - t0))
"""
    cs = {}
    for smp in (1, 2):
        argv = [m86, *boot_args(kernel, initrd, script, "quiet "), "-smp", str(smp), "-icount", "shift=0",
                "-drive", f"id=d0,file={img},format=raw,if=none,readonly=on", "-device", "virtio-blk-device,drive=d0",
                "--stats"]
        rc, out, err = run_to_end(argv, 300)
        sc.out, sc.err = out, err
        m = re.search(r"READS-CS=(\d+)", out)
        if not sc.check(rc == 0 and m is not None, f"-smp {smp}: the guest did not time its reads (exit {rc})"):
            return sc
        cs[smp] = int(m.group(1))
        if smp == 2:
            m = re.search(r"(\d+) idle waits skipped", err)
            sc.check(m is not None, "--stats printed no run-loop figures")
            if m: sc.notes.append(f"{m.group(1)} idle waits skipped")
    sc.notes.append(f"1500 reads: {cs[1] * 10} ms at -smp 1, {cs[2] * 10} ms at -smp 2 of guest time")
    # Each read at -smp 1 costs tens of microseconds of guest time; a lost wake-up costs up to a
    # timer tick (4 ms at HZ=250) per read, seconds in all.
    sc.check(cs[2] <= 2 * cs[1] + 20,
             f"-smp 2 took {cs[2] * 10} ms of guest time for reads that take {cs[1] * 10} ms at -smp 1")
    return sc


SCENARIOS = {
    "options": (sc_options, False),
    "bad-ring": (sc_bad_ring, False),
    "blk": (sc_blk, True),
    "net": (sc_net, True),
    "net-frag": (sc_net_frag, True),
    "idle": (sc_idle, True),
    "wakeup": (sc_wakeup, True),
    "reboot": (sc_reboot, True),
    "rng": (sc_rng, True),
    "console": (sc_console, True),
    "doc1": (lambda m, t, a: doc_example(m, t, a, 1), True),
    "doc2": (lambda m, t, a: doc_example(m, t, a, 2), True),
}


def main():
    m86 = micro86_arg(__doc__, ("as", "ld", "mke2fs", "debugfs", "e2fsck", "cpio", "gcc"),
                      "binutils, e2fsprogs, cpio, gcc; see scripts/setup-deps.sh")
    names = sys.argv[2:] or list(SCENARIOS)
    assets = None
    if any(SCENARIOS[n][1] for n in names):
        k = virtio_kernel()
        assets = (k, asset("M86_INITRD", "guest-assets.sh")) if k else None
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="m86-virtio-") as tmp:
        for name in names:
            fn, needs_kernel = SCENARIOS[name]
            if needs_kernel and not assets:
                print(f"FAIL {name}: no virtio guest kernel (scripts/guest-kernel.sh)")
                failed += 1
                continue
            t0 = time.monotonic()
            sc = fn(m86, tmp, assets)
            secs = time.monotonic() - t0
            label = f"{name} ({secs:.1f} s" + "".join(f", {n}" for n in sc.notes) + ")"
            if report(label, sc.failures, sc.out, sc.err):
                passed += 1
            else:
                failed += 1
    print(f"e2e-virtio: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
