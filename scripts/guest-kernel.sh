#!/usr/bin/env bash
# Build micro86's own guest kernel, once, cached outside the tree.
#
# Debian's stock kernels lack CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES, so on microvm with acpi=off they
# cannot find virtio-mmio devices. This script builds a small kernel from Debian's linux-source
# package (the same upstream version as the stock kernel where the archive has it):
#   make tinyconfig (x86_64) -> merge scripts/guest-kernel.config -> make olddefconfig
#   -> check every fragment option kept its value -> make bzImage (vmlinux is kept for PVH boots).
# Output (printed as shell assignments on the last lines of stdout, also written to
# $CACHE/virtio-kernel.env; progress goes to stderr, so `eval "$(scripts/guest-kernel.sh)"` works):
#   M86_VIRTIO_KERNEL=<path to bzImage>  M86_VIRTIO_VMLINUX=<path to vmlinux>
#
# Cache: ${M86_CACHE:-$HOME/.cache/micro86}/guest-kernel/. The key is a hash of the fragment, the
# linux-source package and version, and this script's recipe number; with the same inputs a re-run
# only looks the version up and prints the paths. The unpacked source (about 1.3 GB) stays in the
# cache for later builds; the object tree is deleted after a successful build unless
# M86_KEEP_KBUILD=1. Environment: M86_KERNEL_JOBS (make -j, default 2), M86_LINUX_SOURCE (a
# linux-source-X.Y package to use instead of the one matching the stock kernel),
# M86_KERNEL_FRAGMENT (another fragment file, for experiments).
set -euo pipefail

RECIPE=1  # bump when the steps below change what gets built from the same fragment and source
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FRAGMENT=${M86_KERNEL_FRAGMENT:-$HERE/guest-kernel.config}
CACHE=${M86_CACHE:-$HOME/.cache/micro86}
JOBS=${M86_KERNEL_JOBS:-2}
KMAKE=(make ARCH=x86_64)

say() { echo "guest-kernel: $*" >&2; }
die() { echo "guest-kernel: error: $*" >&2; exit 1; }
SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo

[[ -f $FRAGMENT ]] || die "config fragment $FRAGMENT not found"
mkdir -p "$CACHE/debs" "$CACHE/guest-kernel"

# ---- which linux-source: the stock kernel's version (what linux-image-amd64 points at) ----------
candidate() { apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" {print $2}'; }
stock_pkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ && !p {print $2; p = 1}'; }
kpkg=$(stock_pkg)
if [[ -z $kpkg ]]; then
  say "package lists look empty; running apt-get update"
  $SUDO apt-get update -qq || die "apt-get update failed"
  kpkg=$(stock_pkg)
fi
[[ -n $kpkg ]] || die "cannot resolve the kernel package linux-image-amd64 depends on"
stock_ver=$(candidate "$kpkg")                           # e.g. 6.1.192-2
series=$(sed -n 's/^linux-image-\([0-9]\+\.[0-9]\+\)\..*/\1/p' <<<"$kpkg")   # e.g. 6.1
srcpkg=${M86_LINUX_SOURCE:-linux-source-$series}
if apt-cache madison "$srcpkg" 2>/dev/null | awk -v v="$stock_ver" '$3 == v {f = 1} END {exit !f}'; then
  srcver=$stock_ver
else
  srcver=$(candidate "$srcpkg")
  [[ -n $srcver ]] || die "Debian package $srcpkg is not available (apt-cache policy $srcpkg)"
  [[ -n ${M86_LINUX_SOURCE:-} ]] ||
    say "note: $srcpkg $stock_ver (the stock kernel's version) is not in the archive; using $srcver"
fi

key=$( { echo "recipe $RECIPE"; echo "$srcpkg $srcver"; cat "$FRAGMENT"; } | sha256sum | cut -c1-12)
OUT=$CACHE/guest-kernel/$srcver-$key
ENVFILE=$CACHE/virtio-kernel.env

emit() {
  printf 'M86_VIRTIO_KERNEL=%s\nM86_VIRTIO_VMLINUX=%s\n' "$OUT/bzImage" "$OUT/vmlinux" > "$ENVFILE.tmp"
  mv "$ENVFILE.tmp" "$ENVFILE"
  cat "$ENVFILE"
}
done_already() { [[ -f $OUT/complete && -f $OUT/bzImage && -f $OUT/vmlinux ]]; }

if done_already; then emit; exit 0; fi

# One builder at a time (tests started in parallel wait here, then find the result).
exec 9> "$CACHE/guest-kernel/.lock"
flock 9
if done_already; then emit; exit 0; fi

# ---- build dependencies (only the missing ones) ----------------------------------------------
# bc/bison/flex: Kconfig and the build; libelf-dev: objtool; xz-utils: the source tarball.
# Not needed with this fragment: libssl-dev (only for module signing / certificates), dwarves (BTF).
missing=()
for p in build-essential bc bison flex libelf-dev xz-utils; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing build dependencies: ${missing[*]}"
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
fi

# ---- the source: fetch the .deb into the shared debs/ directory, unpack it once --------------
SRC=$CACHE/guest-kernel/src/$srcpkg-$srcver
if [[ ! -f $SRC/.unpacked ]]; then
  deb=$CACHE/debs/${srcpkg}_${srcver//:/%3a}_all.deb
  if [[ ! -f $deb ]]; then
    say "downloading $srcpkg $srcver"
    (cd "$CACHE/debs" && apt-get download -q "$srcpkg=$srcver" >/dev/null 2>&1) ||
      die "apt-get download $srcpkg=$srcver failed"
    [[ -f $deb ]] || die "apt-get download did not produce $deb"
  fi
  say "unpacking $srcpkg $srcver"
  rm -rf "$SRC" "$SRC.tmp" && mkdir -p "$SRC.tmp"
  dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/src/$srcpkg.tar.xz" | tar -xJ -C "$SRC.tmp" ||
    die "cannot unpack /usr/src/$srcpkg.tar.xz from $deb"
  top=$(find "$SRC.tmp" -mindepth 1 -maxdepth 1 -type d | head -1)
  [[ -n $top && -f $top/Makefile ]] || die "no kernel tree found in $deb"
  mv "$top" "$SRC" && rmdir "$SRC.tmp"
  touch "$SRC/.unpacked"
fi

# ---- configure, check, build -----------------------------------------------------------------
B=$OUT/build
LOG=$OUT/build.log
rm -rf "$OUT" && mkdir -p "$B"
fail() { tail -n 40 "$LOG" >&2 || true; die "$* (full log: $LOG)"; }

kversion=$(make -s --no-print-directory -C "$SRC" kernelversion 2>/dev/null)
say "building Linux $kversion ($srcpkg $srcver) with $(basename "$FRAGMENT") in $OUT"
t0=$(date +%s)
times > "$OUT/times.before"   # CPU time of this shell and its children (the builtin does not fork)
"${KMAKE[@]}" -C "$SRC" O="$B" tinyconfig > "$LOG" 2>&1 || fail "make tinyconfig failed"
(cd "$B" && "$SRC/scripts/kconfig/merge_config.sh" -m .config "$FRAGMENT") >> "$LOG" 2>&1 ||
  fail "merge_config.sh failed"
"${KMAKE[@]}" -C "$SRC" O="$B" olddefconfig >> "$LOG" 2>&1 || fail "make olddefconfig failed"

# Every option of the fragment must have kept its value through olddefconfig (an unmet dependency
# silently drops an option otherwise).
dropped=()
while IFS= read -r line; do
  if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
    grep -qxF -- "$line" "$B/.config" ||
      dropped+=("${BASH_REMATCH[1]}: wanted ${BASH_REMATCH[2]}, got $(grep -m1 -E "^(# )?${BASH_REMATCH[1]}[= ]" "$B/.config" || echo 'absent')")
  elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
    ! grep -q "^${BASH_REMATCH[1]}=" "$B/.config" ||
      dropped+=("${BASH_REMATCH[1]}: wanted unset, got $(grep -m1 "^${BASH_REMATCH[1]}=" "$B/.config")")
  fi
done < "$FRAGMENT"
if ((${#dropped[@]})); then
  printf 'guest-kernel:   %s\n' "${dropped[@]}" >&2
  die "${#dropped[@]} option(s) of $FRAGMENT did not survive make olddefconfig (missing dependency?); config: $B/.config"
fi

say "compiling (make -j$JOBS bzImage; log: $LOG)"
"${KMAKE[@]}" -C "$SRC" O="$B" -j"$JOBS" bzImage >> "$LOG" 2>&1 || fail "make bzImage failed"
t1=$(date +%s)
times > "$OUT/times.after"

[[ -f $B/arch/x86/boot/bzImage && -f $B/vmlinux ]] || fail "the build produced no bzImage/vmlinux"
# PVH: the ELF vmlinux must carry the Xen PHYS32_ENTRY note (type 18) the PVH boot ABI reads.
readelf -n "$B/vmlinux" 2>/dev/null |
  awk '/^ *Xen / && /\(0x0*12\)|PHYS32_ENTRY/ {f = 1} END {exit !f}' ||
  fail "vmlinux has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)"

cp "$B/arch/x86/boot/bzImage" "$OUT/bzImage"
cp "$B/vmlinux" "$OUT/vmlinux"
cp "$B/.config" "$OUT/config"
[[ ${M86_KEEP_KBUILD:-0} == 1 ]] || rm -rf "$B"
# Children's CPU time spent in the build = line 2 of `times`, after minus before ("1m2.345s" fields).
cpu=$(awk 'function sec(t) { split(t, a, /[ms]/); return a[1] * 60 + a[2] }
           FNR == 2 { u[NR > FNR] = sec($1); s[NR > FNR] = sec($2) }
           END { printf "%.0f s user, %.0f s sys", u[1] - u[0], s[1] - s[0] }' \
      "$OUT/times.before" "$OUT/times.after")
say "built in $((t1 - t0)) s wall ($cpu CPU); bzImage $(stat -c %s "$OUT/bzImage") bytes"
touch "$OUT/complete"
emit
