#!/bin/sh
# Lays out the file tree of strata's container image (build/Containerfile) under ROOT:
# the executable, the shared libraries it loads as ldd lists them (glibc's, nothing
# else), the data directory owned by uid 65532, and a writable /tmp for SQLite's
# temporary files. The tests run the executable in this tree under chroot.
# usage: rootfs.sh STRATA_EXECUTABLE ROOT
set -eu
bin=$1
root=$2
if ldd "$bin" | grep -q 'not found'; then
  echo "rootfs.sh: $bin needs libraries this system lacks:" >&2
  ldd "$bin" >&2
  exit 1
fi
mkdir -p "$root/usr/local/bin" "$root/var/lib/strata" "$root/tmp"
cp "$bin" "$root/usr/local/bin/strata"
chmod 0755 "$root/usr/local/bin/strata"
for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
chown 65532:65532 "$root/var/lib/strata"
chmod 0700 "$root/var/lib/strata"
chmod 1777 "$root/tmp"
