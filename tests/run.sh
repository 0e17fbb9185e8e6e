#!/usr/bin/env bash
# tests/run.sh — set up and run every check for inlet, from a fresh Debian
# machine that has Rust (rustup, cargo, rustfmt, clippy), gcc, Python and apt.
#
#   tests/run.sh            # from anywhere; works in CI (CI=true) without prompts
#
# Steps: Debian build packages (only if missing) -> Tansu 0.6.0 broker (only if
# missing) -> SDKs (tests/sdk/install.sh) -> cargo fmt --check -> cargo clippy -D warnings -> cargo test ->
# loadtest/bench --quick -> deploy/ checks -> fuzz targets.
#
# Environment:
#   TANSU_BIN   use this tansu binary instead of PATH / ~/.cargo/bin (also read
#               by tests/common/broker.rs)
#   SKIP_APT=1  never call apt-get (report missing packages and continue)
set -euo pipefail

TANSU_VERSION=0.6.0
TANSU_INSTALL=(cargo install tansu --version "$TANSU_VERSION" --features dynostore,libsql --locked)

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }

# ---------------------------------------------------------------------------
step "Rust toolchain"
cargo --version
for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        echo "adding rustup component $component"
        rustup component add "$component"
    fi
done

# ---------------------------------------------------------------------------
step "Debian packages"
# What the native builds need, besides rustc/cargo (determined from the
# librdkafka configure log and the Tansu `cargo install` log on Debian 12):
#   gcc, libc6-dev, make
#             rdkafka-sys builds librdkafka 2.12 with its mklove ./configure
#             (a bash script) and `make libs`; zstd-sys, lz4-sys, libsql-ffi,
#             ring and aws-lc-sys (the last four in Tansu) compile C via the
#             `cc` crate.
#   g++       librdkafka's ./configure fails without a C++ compiler.
#   pkg-config, zlib1g-dev
#             rdkafka feature `libz`: libz-sys and librdkafka's configure find
#             the system zlib through pkg-config (without them libz-sys falls
#             back to compiling its bundled zlib).
#   libssl-dev
#             rdkafka feature `ssl` (TLS and SASL/SCRAM to brokers) links the
#             system OpenSSL.
#   prometheus
#             tests/prometheus.rs runs a real Prometheus server against inlet;
#             deploy/check.sh uses its promtool.
#   chromium  tests/browser.rs drives headless Chromium against inlet (CORS, sendBeacon, pixel).
#   redis-server
#             tests/fleet.rs runs three inlet replicas sharing one Redis (quotas, dedupe).
#   haproxy, openssl
#             tests/kafka_security.rs terminates TLS in front of Tansu with haproxy (Tansu 0.6.0
#             serves no TLS) and makes its CA and certificates with openssl.
# Not needed (Tansu 0.6.0 --features dynostore,libsql and inlet build on a
# host without them): cmake (aws-lc-sys 0.38 builds with cc), libclang
# (libsql-ffi ships pre-generated bindings), protoc (inlet uses protox).
need_pkgs=()
for pkg in gcc libc6-dev make g++ pkg-config zlib1g-dev libssl-dev prometheus chromium redis-server haproxy openssl; do
    if ! dpkg -s "$pkg" >/dev/null 2>&1; then
        need_pkgs+=("$pkg")
    fi
done
if ((${#need_pkgs[@]})); then
    if [[ "${SKIP_APT:-}" == 1 ]]; then
        echo "missing (SKIP_APT=1, not installing): ${need_pkgs[*]}"
    else
        echo "installing: ${need_pkgs[*]}"
        SUDO=()
        if [[ $(id -u) -ne 0 ]]; then SUDO=(sudo); fi
        export DEBIAN_FRONTEND=noninteractive
        "${SUDO[@]}" apt-get update
        "${SUDO[@]}" apt-get install -y --no-install-recommends "${need_pkgs[@]}"
    fi
else
    echo "all present"
fi

# ---------------------------------------------------------------------------
step "Tansu broker $TANSU_VERSION (Kafka-protocol broker for integration tests)"
tansu_bin=""
if [[ -n "${TANSU_BIN:-}" ]]; then
    tansu_bin="$TANSU_BIN"
elif command -v tansu >/dev/null 2>&1; then
    tansu_bin="$(command -v tansu)"
fi
if [[ -n "$tansu_bin" ]] && "$tansu_bin" --version 2>/dev/null | grep -qF " $TANSU_VERSION"; then
    echo "using $tansu_bin ($("$tansu_bin" --version))"
else
    if [[ -n "${TANSU_BIN:-}" ]]; then
        echo "TANSU_BIN=$TANSU_BIN is not tansu $TANSU_VERSION" >&2
        exit 1
    fi
    echo "not found; building it (takes 15+ minutes): ${TANSU_INSTALL[*]}"
    "${TANSU_INSTALL[@]}"
    tansu --version
fi

# ---------------------------------------------------------------------------
step "SDKs for the drop-in endpoint tests (pinned, into target/sdk; skipped when installed)"
bash tests/sdk/install.sh

# ---------------------------------------------------------------------------
step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo test --all-targets --no-fail-fast"
# The tests' scratch directories (token files, broker data, logs) live in target/tmp; the
# previous run's stay there to be read until now.
rm -rf target/tmp/inlet-*
cargo test --all-targets --no-fail-fast

# ---------------------------------------------------------------------------
step "loadtest/bench --quick (smoke check: builds, runs every scenario briefly)"
# Installs what it lacks (wrk, cmake, `cargo install oha --locked`), builds inlet and
# the two baselines in release mode, and prints its table. It fails only when a run
# fails; its figures are a report, never an assertion (the machine is shared).
python3 loadtest/bench --quick

step "deploy/ checks"
bash deploy/check.sh

step "fuzz targets (10 s each)"
bash fuzz/run.sh 10

step "all checks passed"
