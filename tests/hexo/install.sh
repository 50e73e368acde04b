#!/usr/bin/env bash
# The pinned Hexo of the tests (package.json + package-lock.json here), installed once into a
# cache folder outside the repository that later runs reuse; prints that folder.
#   tests/hexo/install.sh            install if needed, print the folder
# The folder is named after a hash of the pins: new pins, a new folder. Needs node and npm
# (.ci/run installs Debian's nodejs and npm when they are missing).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
for tool in node npm; do
    command -v "$tool" >/dev/null || { echo "error: $tool is not installed (apt-get install nodejs npm)" >&2; exit 1; }
done
pins="$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -c1-12)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/technews-harvester/hexo-$pins"
if [ ! -f "$cache/.installed" ]; then
    mkdir -p "$(dirname "$cache")"
    work="$(mktemp -d "$cache.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    cp "$here/package.json" "$here/package-lock.json" "$work/"
    # Exactly the lock file's versions; no install scripts (none of these needs one).
    (cd "$work" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
    touch "$work/.installed"
    # Another run may have finished first: keep its folder.
    mv -T "$work" "$cache" 2>/dev/null || rm -rf "$work"
    trap - EXIT
    [ -f "$cache/.installed" ] || { echo "error: $cache is in the way (not a finished install): remove it" >&2; exit 1; }
fi
echo "$cache"
