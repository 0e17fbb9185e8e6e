#!/usr/bin/env bash
# deploy/check.sh — validate everything under deploy/ on this machine, without a container
# engine or a cluster. Prints one line per check (ok / FAIL / skip) and exits 1 if any failed.
#
#   bash deploy/check.sh            # from anywhere
#
# Installs what it needs when missing (a second run installs nothing):
#   Debian packages  prometheus (promtool), docker-compose (1.29, validates without an engine),
#                    haproxy (haproxy -c)
#   PyPI, in a venv  kubernetes-validate (Kubernetes JSON schemas, offline), check-jsonschema
#                    (ships the compose-spec schema), PyYAML
# Environment:
#   SKIP_APT=1            never call apt-get (a check whose tool is missing fails)
#   INLET_DEPLOY_TOOLS    where the venv lives (default ~/.cache/inlet-deploy-check)
#   INLET_BIN             inlet binary for the live checks (default: the newer of
#                         target/release/inlet and target/debug/inlet; skipped when neither is there)
#
# Not checked here: building the image or starting the stack (no Docker engine), applying the
# manifests (no cluster), the ServiceMonitor against its CRD schema (checked structurally).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
TOOLS="${INLET_DEPLOY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/inlet-deploy-check}"
VENV="$TOOLS/venv"
PY="$VENV/bin/python"
PIP_PKGS=(kubernetes-validate==1.37.0 check-jsonschema==0.39.0 PyYAML)
K8S_VERSIONS=(1.28.0 1.37.0)   # oldest and newest schema sets checked

failures=0
ok() { printf 'ok    %s\n' "$1"; }
skip() { printf 'skip  %s\n' "$1"; }
fail() {
    printf 'FAIL  %s\n' "$1"
    if [[ -n "${2:-}" ]]; then printf '%s\n' "$2" | sed 's/^/        /' | head -n 40; fi
    failures=$((failures + 1))
}
# check NAME COMMAND...: ok when the command exits 0, else FAIL with its output.
check() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then ok "$name"; else fail "$name" "$out"; fi
}

work=$(mktemp -d)
cleanup() {
    # The live check runs in a subshell: it leaves its inlet's pid in a file.
    local pid
    if [[ -s "$work/inlet.pid" ]]; then
        pid=$(<"$work/inlet.pid")
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# Tools
SUDO=()
if [[ $(id -u) -ne 0 ]]; then SUDO=(sudo); fi
apt_updated=""
apt_install() {   # apt_install PACKAGE: install one Debian package (apt-get update once)
    if [[ "${SKIP_APT:-}" == 1 ]]; then return 1; fi
    export DEBIAN_FRONTEND=noninteractive
    if [[ -z "$apt_updated" ]]; then
        "${SUDO[@]}" apt-get update -qq >/dev/null && apt_updated=1
    fi
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$1" >/dev/null
}
need_cmd() {   # need_cmd COMMAND PACKAGE: ok if present or installed
    command -v "$1" >/dev/null 2>&1 && return 0
    apt_install "$2" >/dev/null 2>&1 || true
    command -v "$1" >/dev/null 2>&1
}

if need_cmd promtool prometheus; then
    ok "tool promtool: $(promtool --version 2>&1 | head -n 1)"
else
    fail "tool promtool: not installed (Debian package prometheus)"
fi
if need_cmd haproxy haproxy; then
    ok "tool haproxy: $(haproxy -v 2>&1 | head -n 1)"
else
    fail "tool haproxy: not installed (Debian package haproxy)"
fi
compose=()
if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif need_cmd docker-compose docker-compose; then
    compose=(docker-compose)
fi
if ((${#compose[@]})); then
    ok "tool ${compose[*]}: $("${compose[@]}" version 2>&1 | head -n 1)"
else
    skip "tool docker compose / docker-compose: neither works here; the compose file is checked against the compose-spec schema only"
fi

venv_ok() {
    [[ -x "$PY" ]] && "$PY" - "${PIP_PKGS[@]}" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, _, want = spec.partition("==")
    have = version(name)
    if want and have != want:
        sys.exit(1)
EOF
}
if ! venv_ok; then
    mkdir -p "$TOOLS"
    out=$({ python3 -m venv --clear "$VENV" && "$VENV/bin/pip" install -q --disable-pip-version-check "${PIP_PKGS[@]}"; } 2>&1) || true
fi
if venv_ok; then
    ok "tool python venv $VENV: ${PIP_PKGS[*]}"
else
    fail "tool python venv $VENV: could not install ${PIP_PKGS[*]}" "${out:-}"
    echo "deploy checks: cannot go on without the Python tools"
    exit 1
fi
have() { command -v "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------------------------------------
# Shell scripts
for script in deploy/check.sh deploy/kafka/create-topics.sh; do
    check "bash -n $script" bash -n "$script"
    if [[ -x "$script" ]]; then ok "$script is executable"; else fail "$script is executable"; fi
done

# create-topics.sh against a stand-in kafka-topics.sh that records its arguments and answers
# --describe like Kafka does (TOPIC_CONFIGS sets what the "existing" topic has).
mkdir -p "$work/kafka/bin"
cat >"$work/kafka/bin/kafka-topics.sh" <<'EOF'
#!/usr/bin/env bash
printf '%s\n' "$*" >>"$STUB_LOG"
if [[ " $* " == *" --describe "* ]]; then
    printf 'Topic: %s\tTopicId: AAAAAAAAAAAAAAAAAAAAAA\tPartitionCount: %s\tReplicationFactor: 3\tConfigs: %s\n' \
        "${*##*--topic }" "${STUB_PARTITIONS:-512}" "${TOPIC_CONFIGS:-cleanup.policy=delete,min.insync.replicas=2}"
    printf '\tTopic: x\tPartition: 0\tLeader: 1\tReplicas: 1,2,3\tIsr: 1,2,3\n'
fi
EOF
chmod +x "$work/kafka/bin/kafka-topics.sh"
create_topics_stub() {
    local log="$work/stub.log"
    : >"$log"
    STUB_LOG="$log" KAFKA_BIN_DIR="$work/kafka/bin" KAFKA_BOOTSTRAP=k1:9092,k2:9092 \
        bash deploy/kafka/create-topics.sh >/dev/null 2>&1 || return 1
    local want
    for topic in inlet.beacons inlet.occurrences inlet.items inlet.recordings otlp_spans otlp_logs otlp_metrics inlet.dead-letters; do
        want="--bootstrap-server k1:9092,k2:9092 --create --if-not-exists --topic $topic --partitions 512 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config max.message.bytes=1048576"
        grep -qF -- "$want" "$log" || { echo "no call: $want"; cat "$log"; return 1; }
    done
    # An existing compacted topic is an error; a missing bootstrap is an error.
    if STUB_LOG="$log" TOPIC_CONFIGS=cleanup.policy=compact,min.compaction.lag.ms=0 KAFKA_BIN_DIR="$work/kafka/bin" \
        KAFKA_BOOTSTRAP=k1:9092 bash deploy/kafka/create-topics.sh >/dev/null 2>&1; then
        echo "a compacted topic was accepted"
        return 1
    fi
    if STUB_LOG="$log" TOPIC_CONFIGS=cleanup.policy=delete,min.compaction.lag.ms=0 KAFKA_BIN_DIR="$work/kafka/bin" \
        KAFKA_BOOTSTRAP=k1:9092 bash deploy/kafka/create-topics.sh >/dev/null 2>&1; then :; else
        echo "a delete topic with min.compaction.lag.ms was refused"
        return 1
    fi
    if env -u KAFKA_BOOTSTRAP STUB_LOG="$log" KAFKA_BIN_DIR="$work/kafka/bin" bash deploy/kafka/create-topics.sh >/dev/null 2>&1; then
        echo "ran without KAFKA_BOOTSTRAP"
        return 1
    fi
}
check "create-topics.sh with a stand-in kafka-topics.sh: 512 partitions, RF 3, min.insync.replicas=2, delete, --if-not-exists; refuses a compacted topic" create_topics_stub

# ---------------------------------------------------------------------------------------------
# Prometheus
if have promtool; then
    check "promtool check rules deploy/prometheus/alerts.yml" promtool check rules deploy/prometheus/alerts.yml
    check "promtool test rules deploy/prometheus/alerts.test.yml" \
        bash -c 'cd deploy/prometheus && promtool test rules alerts.test.yml'
    check "promtool check config deploy/prometheus/prometheus.yml" \
        bash -c 'cd deploy/prometheus && promtool check config prometheus.yml'
fi
if out=$("$PY" deploy/check.py metrics-source 2>&1); then
    ok "metrics: every name deploy/check.py accepts is still in src/metrics.rs${out:+ ($out)}"
else
    fail "metrics: every name deploy/check.py accepts is still in src/metrics.rs" "$out"
fi
check "alerts: required alerts with severity/summary/description/for, each tested firing and silent, known metrics and label values" \
    "$PY" deploy/check.py alerts

# ---------------------------------------------------------------------------------------------
# Grafana
check "grafana/inlet.json: parses, schemaVersion, \${DS_PROMETHEUS}, required panels, known metrics and label values" \
    "$PY" deploy/check.py dashboard
if have promtool; then
    dashboard_promql() {
        "$PY" deploy/check.py dashboard-rules "$work/dashboard-rules.yml" && promtool check rules "$work/dashboard-rules.yml"
    }
    check "grafana/inlet.json: every query parses as PromQL (promtool, Grafana variables substituted)" dashboard_promql
fi
check "grafana/provisioning: datasource and dashboard provider (path mounted by compose)" \
    "$PY" deploy/check.py grafana-provisioning

# ---------------------------------------------------------------------------------------------
# Docker image
check "docker/Dockerfile: stages, build packages, --locked, non-root, EXPOSE, HEALTHCHECK, STOPSIGNAL, COPY sources in the context" \
    "$PY" deploy/check.py dockerfile

# ---------------------------------------------------------------------------------------------
# Compose
check "compose: KRaft quorum, topic creation, two inlet replicas, LB, Prometheus, Grafana (structure)" \
    "$PY" deploy/check.py compose
check "compose: valid against the compose-spec JSON schema (check-jsonschema)" \
    "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose/docker-compose.yml
if ((${#compose[@]})); then
    check "compose: ${compose[*]} config" "${compose[@]}" -f deploy/compose/docker-compose.yml config -q
fi
if have haproxy; then
    # The replicas' names resolve only inside the compose network: haproxy -c warns about them.
    check "compose/haproxy.cfg: haproxy -c" haproxy -c -q -f deploy/compose/haproxy.cfg
fi

# ---------------------------------------------------------------------------------------------
# Kubernetes
check "k8s: probes, preStop, grace period, security context, resources, config and tokens mounts, selectors, ServiceMonitor (structure)" \
    "$PY" deploy/check.py k8s
k8s_files=(deploy/k8s/{deployment,service,hpa,pdb,configmap,secret}.yaml deploy/k8s-spool/statefulset.yaml)
k8s_validate() {   # k8s_validate VERSION FILE...: every file's resources pass, strictly
    local version=$1 out
    shift
    out=$("$VENV/bin/kubernetes-validate" --strict -k "$version" "$@" 2>&1) || { echo "$out"; return 1; }
    if [[ $(grep -c 'passed for resource' <<<"$out") -ne $# ]]; then
        echo "$out"
        return 1
    fi
}
for version in "${K8S_VERSIONS[@]}"; do
    check "k8s: kubernetes-validate --strict (schemas of Kubernetes $version, offline) on ${#k8s_files[@]} manifests" \
        k8s_validate "$version" "${k8s_files[@]}"
done
skip "k8s: servicemonitor.yaml is a prometheus-operator CRD, for which kubernetes-validate has no schema: checked structurally above"
if have kubectl; then
    kustomize_validate() {   # kustomize_validate DIR: renders DIR, validates every resource
        local dir=$1 out="$work/rendered-${1//\//-}"
        kubectl kustomize "$dir" >"$out.yaml" || return 1
        mkdir -p "$out"
        "$PY" deploy/check.py k8s-split "$out.yaml" "$out" >/dev/null || return 1
        k8s_validate "${K8S_VERSIONS[-1]}" "$out"/*.yaml
    }
    check "k8s: kubectl kustomize deploy/k8s renders; its output passes kubernetes-validate --strict" \
        kustomize_validate deploy/k8s
    spool_variant() {   # the StatefulSet replaces the Deployment and the HPA
        kustomize_validate deploy/k8s-spool || return 1
        local kinds
        kinds=$(grep -h '^kind:' "$work"/rendered-deploy-k8s-spool/*.yaml | sort | tr '\n' ' ')
        [[ $kinds == *"kind: StatefulSet"* && $kinds != *"kind: Deployment"* \
            && $kinds != *"kind: HorizontalPodAutoscaler"* ]] || { echo "kinds: $kinds"; return 1; }
    }
    check "k8s-spool: kubectl kustomize renders the StatefulSet variant (no Deployment, no HPA); passes kubernetes-validate --strict" \
        spool_variant
else
    skip "k8s: kubectl not installed: kustomization.yaml not rendered (its resources are checked to exist)"
fi

# ---------------------------------------------------------------------------------------------
# Live: the real inlet with the k8s ConfigMap's inlet.toml and the Secret's tokens.toml, on
# loopback with no broker; then the Dockerfile's HEALTHCHECK command, /readyz, and SIGTERM.
inlet_bin="${INLET_BIN:-}"
if [[ -z "$inlet_bin" ]]; then
    # The newer of the two: tests/run.sh has just built target/debug/inlet, while a
    # target/release/inlet may be older than the sources.
    for candidate in target/release/inlet target/debug/inlet; do
        if [[ -x "$candidate" && (-z "$inlet_bin" || "$candidate" -nt "$inlet_bin") ]]; then
            inlet_bin=$candidate
        fi
    done
fi
live_inlet() {
    local public admin broker inlet_pid
    read -r public admin broker < <("$PY" -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
    "$PY" -c '
import sys, yaml
cm = yaml.safe_load(open("deploy/k8s/configmap.yaml"))
open(sys.argv[1], "w").write(cm["data"]["inlet.toml"])
sec = yaml.safe_load(open("deploy/k8s/secret.yaml"))
open(sys.argv[2], "w").write(sec["stringData"]["tokens.toml"])' "$work/inlet.toml" "$work/tokens.toml"
    # The environment wins over the file: loopback addresses, a broker port nobody listens on.
    INLET_CONFIG="$work/inlet.toml" INLET_TOKENS_FILE="$work/tokens.toml" \
        INLET_LISTEN="127.0.0.1:$public" INLET_ADMIN_LISTEN="127.0.0.1:$admin" \
        INLET_KAFKA_BROKERS="127.0.0.1:$broker" INLET_SHUTDOWN_GRACE_MS=5000 INLET_LOG=warn \
        "$inlet_bin" >"$work/inlet.log" 2>&1 &
    inlet_pid=$!
    echo "$inlet_pid" >"$work/inlet.pid"
    local status="" i
    for i in $(seq 50); do
        status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/healthz" || true)
        [[ "$status" == 200 ]] && break
        if ! kill -0 "$inlet_pid" 2>/dev/null; then echo "inlet exited:"; cat "$work/inlet.log"; return 1; fi
        sleep 0.2
    done
    [[ "$status" == 200 ]] || { echo "/healthz: $status"; cat "$work/inlet.log"; return 1; }
    # The HEALTHCHECK exactly as in the Dockerfile (it reads the port from INLET_ADMIN_LISTEN).
    local -a hc
    mapfile -d '' hc < <("$PY" deploy/check.py healthcheck-cmd)
    INLET_ADMIN_LISTEN="0.0.0.0:$admin" "${hc[@]}" || { echo "HEALTHCHECK failed against a live inlet"; return 1; }
    if INLET_ADMIN_LISTEN="0.0.0.0:$broker" "${hc[@]}" 2>/dev/null; then
        echo "HEALTHCHECK passed with nothing listening"
        return 1
    fi
    # No broker: not ready (the readinessProbe takes the pod out), still alive.
    status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/readyz")
    [[ "$status" == 503 ]] || { echo "/readyz with no broker: $status, expected 503"; return 1; }
    curl -s "http://127.0.0.1:$admin/metrics" | grep -q '^inlet_build_info' || { echo "no inlet_build_info in /metrics"; return 1; }
    kill -TERM "$inlet_pid"
    local rc=0
    timeout 15 tail --pid="$inlet_pid" -f /dev/null || { echo "inlet did not exit within 15 s of SIGTERM"; return 1; }
    wait "$inlet_pid" || rc=$?
    : >"$work/inlet.pid"
    [[ $rc -eq 0 ]] || { echo "inlet exited $rc after SIGTERM"; cat "$work/inlet.log"; return 1; }
}
# The compose replicas' environment (with deploy/tokens.example.toml, as compose mounts it):
# inlet accepts it, and on SIGTERM stays serving, not ready, for the shutdown delay.
live_compose_env() {
    local public admin broker inlet_pid
    read -r public admin broker < <("$PY" -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
    local -a envs
    mapfile -d '' envs < <("$PY" -c '
import sys, yaml
env = yaml.safe_load(open("deploy/compose/docker-compose.yml"))["services"]["inlet-1"]["environment"]
sys.stdout.write("\0".join(f"{k}={v}" for k, v in env.items()))')
    ((${#envs[@]} > 3)) || { echo "no environment for inlet-1"; return 1; }
    # Loopback addresses and the tokens file's path here; a 1 s delay instead of 5 s.
    env "${envs[@]}" INLET_LISTEN="127.0.0.1:$public" INLET_ADMIN_LISTEN="127.0.0.1:$admin" \
        INLET_KAFKA_BROKERS="127.0.0.1:$broker" INLET_TOKENS_FILE=deploy/tokens.example.toml \
        INLET_SHUTDOWN_DELAY_MS=1000 INLET_LOG=warn "$inlet_bin" >"$work/inlet-compose.log" 2>&1 &
    inlet_pid=$!
    echo "$inlet_pid" >"$work/inlet.pid"
    local status="" i
    for i in $(seq 50); do
        status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$public/healthz" || true)
        [[ "$status" == 200 ]] && break
        if ! kill -0 "$inlet_pid" 2>/dev/null; then echo "inlet exited:"; cat "$work/inlet-compose.log"; return 1; fi
        sleep 0.2
    done
    [[ "$status" == 200 ]] || { echo "/healthz: $status"; cat "$work/inlet-compose.log"; return 1; }
    kill -TERM "$inlet_pid"
    sleep 0.3
    status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$public/healthz" || true)
    [[ "$status" == 200 ]] || { echo "public /healthz during the shutdown delay: $status, expected 200"; return 1; }
    status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/readyz" || true)
    [[ "$status" == 503 ]] || { echo "/readyz during the shutdown delay: $status, expected 503"; return 1; }
    local rc=0
    timeout 15 tail --pid="$inlet_pid" -f /dev/null || { echo "inlet did not exit within 15 s of SIGTERM"; return 1; }
    wait "$inlet_pid" || rc=$?
    : >"$work/inlet.pid"
    [[ $rc -eq 0 ]] || { echo "inlet exited $rc after SIGTERM"; cat "$work/inlet-compose.log"; return 1; }
}
if [[ -n "$inlet_bin" ]] && have curl; then
    check "live ($inlet_bin): serves with the k8s ConfigMap + Secret; Dockerfile HEALTHCHECK passes (and fails on a closed port); /readyz 503 with no broker; exits 0 on SIGTERM" live_inlet
    check "live ($inlet_bin): accepts the compose replicas' environment; serves, not ready, during the shutdown delay; exits 0" live_compose_env
else
    skip "live: no inlet binary (target/release/inlet or target/debug/inlet) or no curl"
fi

# ---------------------------------------------------------------------------------------------
skip "docker build / compose up / kubectl apply: no Docker engine or cluster here (hadolint is not available either)"
if ((failures)); then
    echo "deploy checks: $failures failed"
    exit 1
fi
echo "deploy checks: all passed"
