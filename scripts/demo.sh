#!/usr/bin/env bash
# make demo: the main job end to end on a fresh pool.
# DEMO_DIR=/some/dir keeps the pool and images there; by default a temp dir
# is used and removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin/thinctl}
KEEP=${DEMO_DIR:+1}
DIR=${DEMO_DIR:-$(mktemp -d /tmp/thinpool-demo.XXXXXX)}
mkdir -p "$DIR"
export THINPOOL=$DIR/pool.img
rm -f "$THINPOOL"
cleanup() {
  "$BIN" daemon stop >/dev/null 2>&1 || true
  [ -n "$KEEP" ] && echo "Left the pool and images in $DIR" || rm -rf "$DIR"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ thinctl %s\n' "$*"; "$BIN" "$@"; }
need() { command -v "$1" >/dev/null 2>&1; }

step "1. A 10 GiB pool: one sparse file, 64 KiB blocks"
run pool create --size 10G
ls -lsh "$THINPOOL" | awk '{print "host space used:", $1, " apparent size:", $6}'

step "2. A base image: a 256 MiB ext4 filesystem made from a directory (no root needed)"
SRC=$DIR/rootfs
mkdir -p "$SRC/etc" "$SRC/data"
echo "thinpool demo" > "$SRC/etc/motd"
for i in $(seq 1 20); do head -c 1M /dev/urandom > "$SRC/data/file$i.bin"; done
if need mkfs.ext4 && need debugfs; then
  mkfs.ext4 -q -F -b 4096 -E nodiscard -d "$SRC" "$DIR/base.img" 256M
  HAVE_EXT4=1
else
  echo "(mkfs.ext4/debugfs missing: install e2fsprogs; using a raw image instead)"
  truncate -s 256M "$DIR/base.img"
  dd if=/dev/urandom of="$DIR/base.img" bs=1M count=20 conv=notrunc status=none
  HAVE_EXT4=
fi
run device import base "$DIR/base.img"
echo "(the device is 256 MiB, but only the blocks holding data are mapped)"

step "3. Snapshots: a read-only image layer and a writable container on top"
run snapshot create base base-v1 --readonly
run snapshot create base-v1 work
run snapshot ls

step "4. Change one file in the container's filesystem, then write the image back"
cp --sparse=always "$DIR/base.img" "$DIR/work.img"
if [ -n "$HAVE_EXT4" ]; then
  echo "hello from the container" > "$DIR/hello.txt"
  debugfs -w -R "write $DIR/hello.txt /etc/hello.txt" "$DIR/work.img" >/dev/null 2>&1
else
  printf 'hello from the container' | dd of="$DIR/work.img" bs=1 seek=$((5 << 20)) conv=notrunc status=none
fi
run device import work "$DIR/work.img"
echo "(only the blocks that differ were written: the rest stays shared with base-v1)"

step "5. What changed between the image layer and the container (like thin_delta)"
run device diff base-v1 work

step "6. Devices, with mapped and exclusive space"
run device ls

step "7. Pool usage, as docker info / lvs report it"
run pool info

step "8. A full check of every mapping and reference count"
run pool check

step "9. The container exported as a sparse raw image, byte-identical"
run device export work "$DIR/export.img"
cmp "$DIR/export.img" "$DIR/work.img" && echo "export.img == work.img"
if [ -n "$HAVE_EXT4" ]; then
  e2fsck -fn "$DIR/export.img" >/dev/null 2>&1 && echo "e2fsck: the exported filesystem is clean"
  debugfs -R "cat /etc/hello.txt" "$DIR/export.img" 2>/dev/null
fi

step "10. Metadata in thin_dump XML, readable by thin-provisioning-tools"
run pool dump -o "$DIR/dump.xml"
head -4 "$DIR/dump.xml"
if need thin_restore && need thin_check; then
  truncate -s 16M "$DIR/meta.bin"
  thin_restore -i "$DIR/dump.xml" -o "$DIR/meta.bin" >/dev/null
  thin_check "$DIR/meta.bin" >/dev/null 2>&1 && echo "thin_check: metadata restored by thin_restore is clean"
  need thin_ls && thin_ls -o DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS "$DIR/meta.bin"
else
  echo "(install thin-provisioning-tools to check the dump with thin_restore/thin_check)"
fi

if [ "$(id -u)" = 0 ] && [ -e /dev/fuse ] && [ -e /dev/loop-control ]; then
  step "11. Block devices: a 100 GiB device formatted and mounted (the pool daemon starts by itself)"
  run device create web --size 100G
  run device mount web "$DIR/mnt/web" --mkfs ext4
  echo "<h1>version 1</h1>" > "$DIR/mnt/web/index.html"
  sync

  step "12. A writable snapshot of the mounted device (filesystem frozen while it is taken), mounted beside it"
  run snapshot create web web-snap --freeze "$DIR/mnt/web"
  run device mount web-snap "$DIR/mnt/snap"
  echo "<h1>version 2</h1>" > "$DIR/mnt/snap/index.html"
  echo "only in the snapshot" > "$DIR/mnt/snap/new.txt"
  sync
  echo "web/index.html:      $(cat "$DIR/mnt/web/index.html")"
  echo "web-snap/index.html: $(cat "$DIR/mnt/snap/index.html")"
  echo "web:      $(ls "$DIR/mnt/web" | tr '\n' ' ')"
  echo "web-snap: $(ls "$DIR/mnt/snap" | tr '\n' ' ')"
  run device ls
  run daemon status

  step "13. Unmount, detach, stop the daemon; the pool checks clean"
  run device umount "$DIR/mnt/snap"
  run device umount web
  run daemon stop
  run pool check

  # The Docker story: images as read-only snapshot chains, containers as
  # writable snapshots, volumes as their own thin devices.
  if [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 && need chroot; then
    # inside DIR SCRIPT: run SCRIPT with the image's busybox sh, chrooted.
    inside() { printf "$ chroot %s /bin/sh -c '%s'\n" "$1" "$2"; chroot "$1" /bin/sh -c "$2"; }
    step "14. Two images built from one Dockerfile at two commits: same base, apt and pip layers, different app code"
    echo "$ go run ./scripts/mkimage $DIR/images    # docker save tarballs around a static busybox"
    ${GO:-go} run ./scripts/mkimage "$DIR/images"
    run image import "$DIR/images/app-v1.tar"
    used1=$("$BIN" --json pool info | sed -n 's/.*"dataUsed": *\([0-9]*\).*/\1/p')
    run image import "$DIR/images/app-v2.tar"
    used2=$("$BIN" --json pool info | sed -n 's/.*"dataUsed": *\([0-9]*\).*/\1/p')
    echo "(the second import reused the 3 shared layers: pool data grew by $(((used2 - used1) / 1024)) KiB, its app layer)"
    run image ls
    run image history app:v2

    step "15. A container: a writable snapshot of app:v1, with a volume and a read-only bind mount"
    mkdir -p "$DIR/site"
    echo "<h1>served from the host</h1>" > "$DIR/site/index.html"
    run container create --name web -v webdata:/data -v "$DIR/site:/srv:ro" app:v1
    run container create --name other app:v1
    run container mount web "$DIR/mnt/c-web"
    run container mount other "$DIR/mnt/c-other"
    inside "$DIR/mnt/c-web" '/app/main.sh; echo "changed in web" > /etc/motd; echo "kept in the volume" > /data/hello; cat /srv/index.html'
    if inside "$DIR/mnt/c-web" 'echo x > /srv/x'; then
      echo "the read-only bind mount took a write" >&2
      exit 1
    fi
    sync -f "$DIR/mnt/c-web" "$DIR/mnt/c-web/data"
    echo "web:   /etc/motd = $(cat "$DIR/mnt/c-web/etc/motd")"
    echo "other: /etc/motd = $(cat "$DIR/mnt/c-other/etc/motd")    (the image and its other containers are unchanged)"
    run container ls

    step "16. The volume outlives its container"
    run container umount web
    run container rm web
    run volume ls
    run container create --name web2 -v webdata:/data app:v2
    run container mount web2 "$DIR/mnt/c-web2"
    inside "$DIR/mnt/c-web2" '/app/main.sh; cat /data/hello'

    step "17. The storage section of docker info"
    run info

    step "18. Clean up: unmount, remove containers, the volume and the images; the pool checks clean"
    run container umount web2
    run container umount other
    run container rm web2 other
    run volume rm webdata
    run image rm app:v1 app:v2
    run daemon stop
    run pool check
  else
    echo
    echo "(the image, container and volume steps need a static busybox at /bin/busybox and chroot: apt-get install busybox-static)"
  fi

  step "19. How it compares: two workloads of thinctl bench --quick (make bench runs them all; bench/results/REPORT.md)"
  workloads=snapshot
  need fio && workloads=firstwrite,snapshot
  run bench --quick --workloads "$workloads" --dir "$DIR"
else
  echo
  echo "(run 'sudo make demo' to also attach, format and mount devices: that part needs root, FUSE and loop devices)"
fi

step "Done"
