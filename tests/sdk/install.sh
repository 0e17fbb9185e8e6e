#!/usr/bin/env bash
# tests/sdk/install.sh — install the real SDKs the drop-in endpoint tests drive (pinned in
# requirements.txt and package.json / package-lock.json beside this script) into target/sdk:
#
#   target/sdk/python   pip --target: sentry-sdk, rollbar, honeybadger, segment-analytics-python, posthog,
#                       opentelemetry-api, opentelemetry-sdk, opentelemetry-proto,
#                       opentelemetry-exporter-otlp-proto-http (tests/sdk/otlp.py)
#   target/sdk/node     npm ci: @sentry/node, @sentry/browser, rollbar, @segment/analytics-node,
#                       @segment/analytics-next (analytics.js),
#                       posthog-node, posthog-js (the browser SDKs are loaded from here into Chromium),
#                       @opentelemetry/api, @opentelemetry/sdk-trace-base, @opentelemetry/sdk-trace-node,
#                       @opentelemetry/resources, @opentelemetry/exporter-trace-otlp-http
#                       (tests/sdk/otlp.js; the 2.x / 0.2xx line, the newest that supports Node 20)
#
# Skips each part when what is installed was installed from the same pins (a stamp holds the
# pins' checksum), so a second run costs nothing. Needs python3 with pip, and node 20 with npm.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}/sdk"
mkdir -p "$target"

# Installs into $2 with command $3... unless $2/.pins matches the checksum of the files $1.
install_once() {
    local pins="$1" dir="$2"
    shift 2
    local sum
    sum="$(cd "$here" && sha256sum $pins | sha256sum | cut -d' ' -f1)"
    if [[ -f "$dir/.pins" && "$(cat "$dir/.pins")" == "$sum" ]]; then
        echo "up to date: $dir"
        return
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    "$@"
    echo "$sum" >"$dir/.pins"
}

for tool in python3 node npm; do
    if ! command -v "$tool" >/dev/null; then
        echo "tests/sdk/install.sh: $tool is missing (apt-get install -y python3-pip nodejs npm)" >&2
        exit 1
    fi
done

install_once requirements.txt "$target/python" \
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-input \
    --target "$target/python" -r "$here/requirements.txt"

node_install() {
    cp "$here/package.json" "$here/package-lock.json" "$target/node/"
    (cd "$target/node" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
}
install_once "package.json package-lock.json" "$target/node" node_install
