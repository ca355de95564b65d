#!/usr/bin/env bash
# Build build/out/edgegw_<version>_<arch>.deb around the single executable, with dpkg-deb and
# nothing else: the binary in /usr/bin, the systemd unit, the config in /etc/edgegw (a
# conffile, so a changed config survives upgrades), the maintainer scripts of build/deb.
# Usage: build/deb.sh [EXECUTABLE [OUT_DIR]]   (defaults: build/out/dist/edgegw build/out)
set -euo pipefail
cd "$(dirname "$0")/.."
exe=${1:-build/out/dist/edgegw}
out=${2:-build/out}
version=$("$exe" --version | awk '{print $2}')
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg="$stage/edgegw"
install -D -m 0755 "$exe" "$pkg/usr/bin/edgegw"
install -D -m 0644 build/deb/edgegw.service "$pkg/lib/systemd/system/edgegw.service"
install -d -m 0755 "$pkg/etc/edgegw"
# The example config, with the store where the unit's StateDirectory puts it.
sed -e 's|^store = "data/edgegw.db"|store = "/var/lib/edgegw/edgegw.db"|' \
    config.example.toml > "$pkg/etc/edgegw/edgegw.toml"
grep -q '^store = "/var/lib/edgegw/edgegw.db"' "$pkg/etc/edgegw/edgegw.toml"
chmod 0640 "$pkg/etc/edgegw/edgegw.toml"
install -D -m 0644 README.md "$pkg/usr/share/doc/edgegw/README.md"
install -d -m 0755 "$pkg/DEBIAN"
install -m 0755 build/deb/postinst build/deb/prerm build/deb/postrm "$pkg/DEBIAN/"
echo /etc/edgegw/edgegw.toml > "$pkg/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: edgegw
Version: $version
Architecture: $arch
Maintainer: edgegw developers <edgegw@localhost>
Installed-Size: $size
Depends: adduser, passwd
Section: net
Priority: optional
Description: SMS edge gateway: the Puzzel SMSGW API in front of USB GSM modems
 Serves the Puzzel SMS Gateway API (REST, GET, SOAP, SMPP, email) and sends and
 receives SMS through USB GSM modems over AT commands, with a durable SQLite queue.
CONTROL
mkdir -p "$out"
deb="$out/edgegw_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "built $deb"
