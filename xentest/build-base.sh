#!/usr/bin/env bash
# Build the base of the real-Xen test host from Debian 12's archive alone, into OUT:
#
#   OUT/xen             Xen 4.17 (xen-hypervisor-4.17-amd64, gunzipped: QEMU's -kernel
#                       takes a multiboot ELF, not the .gz)
#   OUT/vmlinuz         the dom0 (and domU) kernel, from Debian's linux-image package
#   OUT/initrd.img      a small dom0 initrd (initramfs-tools MODULES=list: virtio, ext4)
#   OUT/dom0.img        the dom0 root file system (ext4, made with mkfs.ext4 -d)
#
# The hypervisor and the kernel are fetched with `apt-get download` inside the new root
# (so their versions are the ones its xen-utils-4.17 was built with) and unpacked with
# `dpkg-deb -x`: nothing is installed on the machine running this. The dom0 root has
# Debian's xen-utils-4.17 (libxl, xl, oxenstored, xenconsoled), vif-bridge, nftables and
# the Debian Python stack vif-qos runs on; vif-qos itself is NOT in it (each run brings
# the checkout on a second disk, so a code change does not rebuild this).
#
# Usage: build-base.sh OUT   (as root; OUT must not exist)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=$1
mirror=${XENTEST_MIRROR:-http://deb.debian.org/debian}
[ ! -e "$out" ] || { echo "build-base: $out exists" >&2; exit 1; }
mkdir -p "$out"
root=$out/rootfs
mounted=""
cleanup() {
    for m in $mounted; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$root"
}
trap cleanup EXIT

pkgs=$(grep -v '^\s*#' "$here/packages" | xargs | tr ' ' ',')
echo "build-base: debootstrap bookworm ($mirror)" >&2
debootstrap --variant=minbase --include="$pkgs" bookworm "$root" "$mirror" \
    > "$out/debootstrap.log" 2>&1 || { tail -20 "$out/debootstrap.log" >&2; exit 1; }

mount -t proc proc "$root/proc" && mounted="$root/proc"
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C "$@"; }

echo "build-base: kernel and hypervisor (apt-get download + dpkg-deb -x)" >&2
printf 'deb %s bookworm main\n' "$mirror" > "$root/etc/apt/sources.list"
in_root apt-get update -q > "$out/apt.log" 2>&1
kpkg=$(in_root apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
kver=${kpkg#linux-image-}
mkdir -p "$root/tmp/debs"
in_root sh -c "cd /tmp/debs && apt-get download -q $kpkg xen-hypervisor-4.17-amd64" >> "$out/apt.log" 2>&1
# Unpacked beside the root, then copied: the package's ./lib would replace the merged-/usr
# root's /lib symlink.
dpkg-deb -x "$root"/tmp/debs/linux-image-*.deb "$out/kernel"
mkdir -p "$root/usr/lib/modules"
cp -a "$out/kernel/lib/modules/$kver" "$root/usr/lib/modules/"
cp -a "$out/kernel/boot/." "$root/boot/"
rm -rf "$out/kernel"
mkdir -p "$out/hv"
dpkg-deb -x "$root"/tmp/debs/xen-hypervisor-4.17-amd64_*.deb "$out/hv"
dpkg-deb -f "$root"/tmp/debs/xen-hypervisor-4.17-amd64_*.deb Version > "$out/xen-version"
echo "$kver" > "$out/kernel-version"
rm -rf "$root/tmp/debs"
in_root apt-get clean
rm -rf "$root"/var/lib/apt/lists/*
gunzip -c "$out"/hv/boot/xen-4.17-amd64.gz > "$out/xen"
rm -rf "$out/hv"
in_root depmod "$kver"
cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"

echo "build-base: small initrd ($kver)" >&2
conf=$root/etc/initramfs-tools-xentest
mkdir -p "$conf/scripts" "$conf/conf.d" "$conf/hooks"
sed 's/^MODULES=.*/MODULES=list/' "$root/etc/initramfs-tools/initramfs.conf" > "$conf/initramfs.conf"
printf '%s\n' virtio_pci virtio_blk ext4 > "$conf/modules"
in_root mkinitramfs -d /etc/initramfs-tools-xentest -o /boot/initrd-xentest.img "$kver" \
    > "$out/initrd.log" 2>&1 || { tail -20 "$out/initrd.log" >&2; exit 1; }
mv "$root/boot/initrd-xentest.img" "$out/initrd.img"
rm -rf "$conf"

echo "build-base: domU initrd (busybox + xen-netfront)" >&2
"$here/build-domu-initrd.sh" "$root" "$kver" "$root/var/lib/xentest/domu-initrd.gz"

echo "build-base: configure dom0" >&2
echo xentest > "$root/etc/hostname"
echo '/dev/vda / ext4 rw,noatime 0 1' > "$root/etc/fstab"
in_root passwd -d root > /dev/null
# xenconsoled keeps each guest's console in a file (it does not make the directory).
echo 'XENCONSOLED_ARGS="--log=guest --log-dir=/var/log/xen/console"' >> "$root/etc/default/xen"
mkdir -p "$root/var/log/xen/console"
# The scenarios start every guest themselves: no xendomains at boot, no timers.
for unit in xendomains.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
            fstrim.timer systemd-timesyncd.service serial-getty@hvc0.service \
            getty@tty1.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
install -m 0644 "$here/dom0/xentest.service" "$root/etc/systemd/system/xentest.service"
install -m 0755 "$here/dom0/xentest-boot" "$root/usr/local/sbin/xentest-boot"
mkdir -p "$root/etc/systemd/system/multi-user.target.wants" "$root/mnt/io"
ln -sf /etc/systemd/system/xentest.service \
    "$root/etc/systemd/system/multi-user.target.wants/xentest.service"
umount "$root/proc"; mounted=""

echo "build-base: dom0.img (mkfs.ext4 -d)" >&2
size_mb=$(( $(du -sm "$root" | cut -f1) + 768 ))
mkfs.ext4 -q -F -L xentest-dom0 -d "$root" "$out/dom0.img" "${size_mb}M" > /dev/null
