#!/usr/bin/env bash
# Fetch and cache the guest test assets from Debian's packages (never committed to the tree):
#   - the stock generic kernel (the package linux-image-amd64 depends on): vmlinuz + its modules
#   - busybox-static, from which a small initramfs is built
# Output (printed as shell assignments on the last lines, also written to $CACHE/assets.env):
#   M86_KERNEL=<path to bzImage>  M86_INITRD=<path to initramfs.cpio.gz>
#
# Cache: ${M86_CACHE:-$HOME/.cache/micro86}. Re-running is cheap: existing assets are reused.
set -euo pipefail
SCRIPT=$(readlink -f "$0")
CACHE=${M86_CACHE:-$HOME/.cache/micro86}
mkdir -p "$CACHE/debs"
cd "$CACHE"

need_tools=()
command -v cpio >/dev/null || need_tools+=(cpio)
command -v dpkg-deb >/dev/null || need_tools+=(dpkg)
if ((${#need_tools[@]})); then
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need_tools[@]}"
fi

# The kernel package the meta-package points at, e.g. linux-image-6.1.0-56-amd64.
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
if [[ -z $kpkg ]]; then
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
fi
[[ -n $kpkg ]] || { echo "guest-assets: cannot resolve linux-image-amd64's kernel package" >&2; exit 1; }
kver=${kpkg#linux-image-}

fetch() {  # fetch PACKAGE into debs/ unless a .deb for it is already there
  local pkg=$1
  if ! ls debs/"${pkg}"_*.deb >/dev/null 2>&1; then
    (cd debs && apt-get download -q "$pkg" >/dev/null)
  fi
  ls debs/"${pkg}"_*.deb | head -1
}

kdeb=$(fetch "$kpkg")
bdeb=$(fetch busybox-static)

if [[ ! -f kernel/$kver/vmlinuz ]]; then
  rm -rf kernel/"$kver" && mkdir -p kernel/"$kver"/root
  dpkg-deb -x "$kdeb" kernel/"$kver"/root
  cp kernel/"$kver"/root/boot/vmlinuz-"$kver" kernel/"$kver"/vmlinuz
fi
KERNEL=$CACHE/kernel/$kver/vmlinuz

INITRD=$CACHE/initramfs-$kver.cpio.gz
if [[ ! -f $INITRD || $SCRIPT -nt $INITRD ]]; then  # rebuilt when this script changes
  rm -rf initramfs && mkdir -p initramfs/{bin,sbin,etc,proc,sys,dev,tmp,mnt,root,lib/modules}
  dpkg-deb -x "$bdeb" busybox-root
  cp busybox-root/bin/busybox initramfs/bin/busybox
  rm -rf busybox-root
  for applet in $(initramfs/bin/busybox --list); do
    [[ $applet == busybox ]] || ln -sf busybox initramfs/bin/"$applet"
  done
  # Modules a later virtio/ext4 test may load from the stock kernel (kept small: just these trees).
  mdir=kernel/$kver/root/lib/modules/$kver
  if [[ -d $mdir ]]; then
    mkdir -p initramfs/lib/modules/"$kver"
    cp "$mdir"/modules.* initramfs/lib/modules/"$kver"/ 2>/dev/null || true
    for sub in kernel/drivers/virtio kernel/drivers/block kernel/drivers/net/virtio_net.ko \
               kernel/drivers/char/hw_random kernel/fs/ext4 kernel/fs/jbd2 kernel/fs/mbcache.ko \
               kernel/lib/crc16.ko kernel/crypto/crc32c_generic.ko kernel/net/core/failover.ko \
               kernel/drivers/net/net_failover.ko kernel/drivers/char/virtio_console.ko; do
      [[ -e $mdir/$sub ]] || continue
      mkdir -p initramfs/lib/modules/"$kver"/"$(dirname "$sub")"
      cp -r "$mdir/$sub" initramfs/lib/modules/"$kver"/"$(dirname "$sub")"/
    done
  fi
  cat > initramfs/init <<'INIT'
#!/bin/sh
# micro86 test initramfs. Mounts the pseudo file systems, prints a marker the tests wait for, then
# runs the shell script given base64-encoded as m86.run64=<base64> on the kernel command line (or
# plain commands as m86.run="cmd;cmd" without double quotes inside), then reboots; without either,
# it starts an interactive shell on the console.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "M86-USERSPACE-READY"
b64=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^m86\.run64=//p')
cmd=$(sed -n 's/.*m86\.run="\([^"]*\)".*/\1/p' /proc/cmdline)
if [ -n "$b64" ]; then
  echo "$b64" | base64 -d > /tmp/run.sh
elif [ -n "$cmd" ]; then
  echo "$cmd" | tr ';' '\n' > /tmp/run.sh
fi
if [ -f /tmp/run.sh ]; then
  sh /tmp/run.sh
  echo "M86-RUN-DONE"
  reboot -f
fi
exec setsid cttyhack sh
INIT
  chmod +x initramfs/init
  (cd initramfs && find . | sort | cpio -o -H newc --quiet | gzip -9) > "$INITRD.tmp"
  mv "$INITRD.tmp" "$INITRD"
fi

printf 'M86_KERNEL=%s\nM86_INITRD=%s\n' "$KERNEL" "$INITRD" | tee "$CACHE/assets.env"
