#!/usr/bin/env bash
# The dashboard's vendored chart libraries (dashboard/vendor/), against dashboard/vendor/vendor.lock.
#   scripts/vendor-dashboard.sh --check   the committed files match their recorded sha256 (offline)
#   scripts/vendor-dashboard.sh           fetch the pinned versions from the npm registry (npm pack
#                                         checks each tarball's integrity), check the lock's
#                                         integrity and sums, and copy the files in
# To move to a new version: change it and its integrity in the lock, run without --check, and
# put the sums it prints in the lock once you have read what changed.
set -euo pipefail
cd "$(dirname "$0")/../dashboard/vendor"
lock=vendor.lock

sums() { grep -E '^[0-9a-f]{64} ' "$lock" | awk '{print $1 "  " $2}'; }

if [ "${1:-}" = "--check" ]; then
  sums | sha256sum --quiet -c -
  echo "dashboard/vendor: every file matches vendor.lock"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
grep -E '^[a-z][a-z0-9-]* +[0-9]' "$lock" | while read -r pkg version integrity; do
  got=$(cd "$work" && npm pack "$pkg@$version" --json --silent | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["integrity"])')
  if [ "$got" != "$integrity" ]; then
    echo "$pkg@$version: the registry's integrity $got is not the lock's $integrity" >&2
    exit 1
  fi
  mkdir -p "$work/$pkg" && tar xzf "$work/$pkg-$version.tgz" -C "$work/$pkg" --strip-components 1
done
grep -E '^[0-9a-f]{64} ' "$lock" | while read -r _ file from; do
  cp "$work/$from" "$file"
done
if ! sums | sha256sum --quiet -c -; then
  echo "the fetched files differ from vendor.lock's sums; new sums:" >&2
  grep -E '^[0-9a-f]{64} ' "$lock" | while read -r _ file _; do sha256sum "$file"; done >&2
  exit 1
fi
echo "dashboard/vendor: refreshed from the registry; every file matches vendor.lock"
