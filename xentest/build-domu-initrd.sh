#!/usr/bin/env bash
# The initrd of the test guests (PV domUs): Debian's static busybox, the xen-netfront
# module (with its dependencies, from modules.dep) of the dom0's own kernel, and
# guest-init as /init. Small, so a guest boots in seconds even under TCG.
#
# Usage: build-domu-initrd.sh ROOTFS KERNEL_VERSION OUT.gz
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$1 kver=$2 out=$3
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "build-domu-initrd: $busybox missing (Debian package busybox-static)" >&2; exit 1; }
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree"/{bin,sbin,proc,sys,dev,tmp,lib/modules}
cp "$busybox" "$tree/bin/busybox"
ln -s busybox "$tree/bin/sh"
moddir=$root/lib/modules/$kver
# xen-netfront and what modules.dep says it needs, dependencies first.
mods=$(awk -F': *' '$1 ~ /\/xen-netfront\.ko/ {n = split($2, d, " "); for (i = n; i >= 1; i--) print d[i]; print $1}' \
       "$moddir/modules.dep")
[ -n "$mods" ] || { echo "build-domu-initrd: no xen-netfront in $moddir/modules.dep" >&2; exit 1; }
for m in $mods; do
    base=$(basename "$m")
    case "$base" in
        *.xz)  xz -dc "$moddir/$m" > "$tree/lib/modules/${base%.xz}"; base=${base%.xz} ;;
        *.zst) zstd -qdc "$moddir/$m" > "$tree/lib/modules/${base%.zst}"; base=${base%.zst} ;;
        *)     cp "$moddir/$m" "$tree/lib/modules/$base" ;;
    esac
    echo "$base" >> "$tree/lib/modules/order"
done
install -m 0755 "$here/guest-init" "$tree/init"
# What the guest kernel runs on `xl shutdown` / `xl reboot` (orderly_poweroff/_reboot).
printf '#!/bin/sh\nexec /bin/busybox poweroff -f\n' > "$tree/sbin/poweroff"
printf '#!/bin/sh\nexec /bin/busybox reboot -f\n' > "$tree/sbin/reboot"
chmod 0755 "$tree/sbin/poweroff" "$tree/sbin/reboot"
mkdir -p "$(dirname "$out")"
(cd "$tree" && find . | cpio -o -H newc --quiet) | gzip -1 > "$out"
