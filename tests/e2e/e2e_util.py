"""Helpers shared by the end-to-end test scripts (tests/e2e/*.py) and bench/boot_time.py: the
command-line prologue, the guest assets, building the bare-metal test guests (tests/e2e/*.S) and
the ok/FAIL lines.

The scripts in tests/e2e import it from their own folder, which Python puts first on sys.path
whatever the working directory (meson runs them from the build directory); bench scripts add
tests/e2e to sys.path themselves. Importers set sys.dont_write_bytecode first so that running the
tests writes nothing into the source tree.
"""
import functools
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# A kernel log line that means something went wrong in the guest.
BAD = re.compile(r"\b(BUG|WARNING|Oops|Call Trace)\b|Kernel panic|\bpanic\b")


def micro86_arg(doc, tools=(), why=""):
    """The micro86 binary named by the first argument, as an absolute path. Exits with status 2
    after printing `doc` when there is none, and with 77 (meson's "skipped") after a SKIP line when
    one of `tools` is not installed (`why` says what it is for)."""
    if len(sys.argv) < 2:
        print(doc)
        sys.exit(2)
    for tool in tools:
        if not shutil.which(tool):
            print(f"SKIP: {tool} is needed ({why})")
            sys.exit(77)
    return os.path.abspath(sys.argv[1])


@functools.lru_cache(maxsize=None)
def script_env(script):
    """The M86_* variables scripts/`script` prints (guest-assets.sh, guest-kernel.sh: they fetch or
    build the assets once and print their paths)."""
    out = subprocess.run([os.path.join(ROOT, "scripts", script)], check=True, capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.strip().splitlines() if line.startswith("M86_"))


def asset(var, script):
    """The guest asset `var` (M86_KERNEL, M86_INITRD, M86_VIRTIO_KERNEL...) from the environment,
    else from scripts/`script`."""
    return os.environ.get(var) or script_env(script)[var]


def linux_assets():
    """(kernel, initrd): the distro kernel and the busybox initramfs."""
    return asset("M86_KERNEL", "guest-assets.sh"), asset("M86_INITRD", "guest-assets.sh")


def assemble(name, out, defsyms=(), ttext="0", binary=True):
    """Builds the test guest tests/e2e/`name` with GNU as (32-bit; -I tests/e2e for serial.inc) and
    ld, .text at `ttext`: a flat image entered at 0 (binary=True) or an ELF entered at _start.
    Returns `out`, the image's path."""
    obj = out + ".o"
    subprocess.run(["as", "--32", "-I", HERE, *[f"--defsym={d}" for d in defsyms], "-o", obj,
                    os.path.join(HERE, name)], check=True)
    fmt = ["--oformat", "binary"] if binary else []
    subprocess.run(["ld", "-m", "elf_i386", f"-Ttext={ttext}", "-e", "0" if binary else "_start", *fmt,
                    "-o", out, obj], check=True, capture_output=True)
    return out


def report(label, failures, out, err="", tail=30):
    """Prints `ok   label`, or `FAIL label` with the failed checks, the last `tail` lines of the
    guest's output and the end of micro86's stderr. Returns whether the scenario passed."""
    if not failures:
        print(f"ok   {label}")
    else:
        print(f"FAIL {label}")
        for f in failures:
            print(f"     - {f}")
        print("     --- last guest output ---")
        for line in out.splitlines()[-tail:]:
            print(f"     | {line}")
        if err.strip():
            print("     --- micro86 stderr ---")
            for line in err.splitlines()[-10:]:
                print(f"     | {line}")
    sys.stdout.flush()
    return not failures
