#!/usr/bin/env bash
# Fetch the recorded voices used by `jeffreys prepare debvoices` from the Debian archive.
#
#   recipes/realvoices/fetch.sh DIR
#
# Downloads the packages below with `apt-get download` (no root, nothing is installed) into
# DIR/debs/ and unpacks each with `dpkg -x` into DIR/root/, the SRC of
#   jeffreys prepare debvoices DIR/root DATA
# On a Debian/Ubuntu system where these packages are installed, SRC can also be `/`.
# Needs apt-get and dpkg with the archive's `main` component in the apt sources (Debian 12
# "bookworm" was used for docs/real-voices.md). About 460 MB downloaded, 620 MB unpacked.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
PACKAGES=(
  fillets-ng-data-cs     # Czech dialogue: the two fish
  fillets-ng-data-nl     # Dutch dialogue: the two fish
  tuxpaint-stamps-default  # spoken stamp descriptions, one volunteer per language
  klettres-data          # letters and syllables, credited speaker per language
  kajongg                # Mah Jongg calls, five voices, three of them in English and German
  festvox-ru             # a Russian unit-selection voice's recordings (one speaker)
)
DIR=$1
mkdir -p "$DIR/debs" "$DIR/root"
DIR=$(cd "$DIR" && pwd)
cd "$DIR/debs"
for pkg in "${PACKAGES[@]}"; do
  if ! ls "${pkg}"_*.deb >/dev/null 2>&1; then
    apt-get download "$pkg"
  fi
done
for deb in "$DIR"/debs/*.deb; do
  dpkg -x "$deb" "$DIR/root"
done
echo "unpacked ${#PACKAGES[@]} packages into $DIR/root; next:"
echo "  jeffreys prepare debvoices $DIR/root DATA"
