#!/usr/bin/env bash
# Fetch the recorded voices of `jeffreys prepare debvoices` (and, with --mbrola, the MBROLA
# voices of `jeffreys prepare mbrola`) from the Debian archive.
#
#   recipes/realvoices/fetch.sh [--mbrola] DIR
#
# Downloads the packages below with `apt-get download` (no root, nothing is installed) into
# DIR/debs/ and unpacks each with `dpkg -x` into DIR/root/, the SRC of
#   jeffreys prepare debvoices DIR/root DATA
#   jeffreys prepare mbrola DIR/root DATA          (with --mbrola)
# On a Debian/Ubuntu system where these packages are installed, SRC can also be `/`.
# Needs apt-get and dpkg with the archive's `main` component in the apt sources (Debian 12
# "bookworm" was used for docs/real-voices.md). About 460 MB downloaded, 620 MB unpacked.
#
# --mbrola: also mbrola (contrib), the mbrola-VOICE databases named in
# src/jeffreys/corpora/mbrola.tsv (non-free), Debian's libespeak-ng1 (built with MBROLA
# support), libsonic0 and espeak-ng-data: about 400 MB more. contrib and non-free are not in a
# default apt configuration, so they are read through a private one under DIR/apt (Debian's
# archive, the suite of /etc/os-release, its archive keyring); the system's apt sources are
# left as they are. MIRROR=... and SUITE=... override the mirror and the suite.
set -euo pipefail

MBROLA=0
if [ "${1:-}" = "--mbrola" ]; then
  MBROLA=1
  shift
fi
if [ $# -ne 1 ]; then
  echo "usage: $0 [--mbrola] DIR" >&2
  exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
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
APT=(apt-get)
if [ "$MBROLA" = 1 ]; then
  SUITE=${SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")}
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
  KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -r "$KEYRING" ] || { echo "fetch.sh: $KEYRING not found (package debian-archive-keyring)" >&2; exit 2; }
  mkdir -p "$DIR/apt/lists/partial" "$DIR/apt/cache/archives/partial" "$DIR/apt/sources.list.d" "$DIR/apt/preferences.d"
  echo "deb [signed-by=$KEYRING] $MIRROR $SUITE main contrib non-free" > "$DIR/apt/sources.list"
  APT=(apt-get -o "Dir::Etc::SourceList=$DIR/apt/sources.list" -o "Dir::Etc::SourceParts=$DIR/apt/sources.list.d"
       -o "Dir::State::Lists=$DIR/apt/lists" -o "Dir::Cache=$DIR/apt/cache"
       -o "Dir::Etc::Preferences=$DIR/apt/preferences" -o "Dir::Etc::PreferencesParts=$DIR/apt/preferences.d"
       -o Debug::NoLocking=1)
  "${APT[@]}" -q update >/dev/null
  PACKAGES+=(mbrola libespeak-ng1 libsonic0 espeak-ng-data)
  while IFS=$'\t' read -r voice _; do
    case "$voice" in ''|'#'*) continue ;; esac
    PACKAGES+=("mbrola-$voice")
  done < "$HERE/../../src/jeffreys/corpora/mbrola.tsv"
fi
cd "$DIR/debs"
want=()
for pkg in "${PACKAGES[@]}"; do
  ls "${pkg}"_*.deb >/dev/null 2>&1 || want+=("$pkg")
done
if [ ${#want[@]} -gt 0 ]; then
  "${APT[@]}" -q download "${want[@]}"
fi
for pkg in "${PACKAGES[@]}"; do
  dpkg -x "$(ls "${pkg}"_*.deb | head -n 1)" "$DIR/root"
done
echo "unpacked ${#PACKAGES[@]} packages into $DIR/root; next:"
echo "  jeffreys prepare debvoices $DIR/root DATA"
[ "$MBROLA" = 0 ] || echo "  jeffreys prepare mbrola $DIR/root DATA"
