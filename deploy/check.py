"""Structural checks of deploy/, run by deploy/check.sh (one subcommand per check).

    python deploy/check.py SUBCOMMAND [ARGS]

Each subcommand prints what is wrong and exits 1, or prints nothing and exits 0. Needs PyYAML
(check.sh runs it in its tools venv); everything else is the standard library.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"

# ---------------------------------------------------------------------------------------------
# inlet's metrics: name -> (type, {label: closed set of values, or None for an open set}).
ROUTES = {"/v1/beacons", "/v1/occurrences", "/v1/pixel.gif", "/healthz", "/readyz", "unmatched"}
METRICS: dict[str, tuple[str, dict[str, set[str] | None]]] = {
    "inlet_http_requests_total": ("counter", {"route": ROUTES, "status": None}),
    "inlet_http_request_duration_seconds": ("histogram", {"route": ROUTES}),
    "inlet_http_request_body_bytes": ("histogram", {"route": ROUTES}),
    "inlet_events_total": (
        "counter",
        {
            "kind": {"beacon", "occurrence"},
            "outcome": {"accepted", "duplicate", "invalid", "rate_limited", "too_large", "unavailable"},
        },
    ),
    "inlet_rate_limited_requests_total": ("counter", {"token": None}),
    "inlet_auth_failures_total": ("counter", {"reason": {"missing", "unknown"}}),
    "inlet_kafka_produce_latency_seconds": ("histogram", {}),
    "inlet_kafka_delivery_failures_total": (
        "counter",
        {"reason": {"queue_full", "too_large", "timed_out", "broker", "shutting_down"}},
    ),
    "inlet_kafka_ready": ("gauge", {}),
    "inlet_kafka_producer_fatal_errors_total": ("counter", {}),
    "inlet_kafka_resent_total": ("counter", {}),
    "inlet_token_registry_reloads_total": ("counter", {"result": {"success", "failure"}}),
    "inlet_build_info": ("gauge", {"version": None}),
    "inlet_kafka_queue_messages": ("gauge", {}),
    "inlet_kafka_queue_max_messages": ("gauge", {}),
    "inlet_kafka_queue_bytes": ("gauge", {}),
    "inlet_kafka_queue_max_bytes": ("gauge", {}),
    "inlet_kafka_broker_up": ("gauge", {"broker": None}),
    "inlet_kafka_broker_rtt_seconds": ("gauge", {"broker": None}),
    "inlet_kafka_retries_total": ("counter", {}),
    "inlet_kafka_errors_total": ("counter", {}),
    "inlet_http_requests_in_flight": ("gauge", {}),
    "inlet_http_requests_shed_total": ("counter", {}),
    "inlet_http_panics_total": ("counter", {"route": ROUTES}),
    "inlet_http_connections_refused_total": ("counter", {"listener": {"public", "admin"}}),
    # Fleet mode (README "Fleet mode").
    "inlet_quota_backend_up": ("gauge", {}),
    "inlet_quota_fallbacks_total": ("counter", {}),
    "inlet_dead_letters_total": ("counter", {"token": None, "code": None}),
    "inlet_dead_letters_dropped_total": ("counter", {}),
    # The spool (INLET_DELIVERY=spool).
    "inlet_spool_bytes": ("gauge", {}),
    "inlet_spool_max_bytes": ("gauge", {}),
    "inlet_spool_records": ("gauge", {}),
    "inlet_spool_oldest_record_age_seconds": ("gauge", {}),
    "inlet_spool_replay_lag_seconds": ("histogram", {}),
    "inlet_spool_ready": ("gauge", {}),
    "inlet_spool_sync_duration_seconds": ("histogram", {}),
    "inlet_spool_group_commit_records": ("histogram", {}),
    "inlet_spool_corrupt_bytes_total": ("counter", {}),
    "inlet_spool_refusals_total": ("counter", {"reason": {"spool_full", "spool_unavailable"}}),
    "inlet_spool_delivered_total": ("counter", {}),
    "inlet_spool_rejected_total": ("counter", {}),
    # Prometheus' own per-target series.
    "up": ("gauge", {}),
}
TARGET_LABELS = {"job", "instance"}
GRAFANA_VARS = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "${DS_PROMETHEUS}": "prometheus",
    "$job": "inlet",
    "$instance": ".*",
}

SELECTOR = re.compile(r"\b(inlet_[a-z0-9_]+|up)\b\s*(\{[^}]*\})?")
MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def resolve(name: str) -> tuple[str, dict[str, set[str] | None]] | None:
    """The metric a series name belongs to, with its labels (histogram series get `le`)."""
    if name in METRICS:
        kind, labels = METRICS[name]
        return name, dict(labels)
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and base in METRICS and METRICS[base][0] == "histogram":
            labels = dict(METRICS[base][1])
            if suffix == "_bucket":
                labels["le"] = None
            return base, labels
    return None


def check_expr(where: str, expr: str, errors: list[str], used: set[str]) -> None:
    """Every metric an expression names exists, with known labels and closed-set values."""
    expr_labels: set[str] = set(TARGET_LABELS)
    for m in SELECTOR.finditer(expr):
        name, braces = m.group(1), m.group(2)
        found = resolve(name)
        if found is None:
            errors.append(f"{where}: unknown metric {name!r} in: {expr.strip()}")
            continue
        base, labels = found
        used.add(base)
        expr_labels |= set(labels)
        if not braces:
            continue
        body = braces[1:-1]
        for part in split_matchers(body):
            mm = MATCHER.fullmatch(part)
            if not mm:
                errors.append(f"{where}: cannot parse matcher {part!r} of {name}")
                continue
            label, op, value = mm.groups()
            if label == "__name__":
                continue
            if label not in labels and label not in TARGET_LABELS:
                errors.append(f"{where}: {name} has no label {label!r}")
                continue
            allowed = labels.get(label)
            if allowed is None or "$" in value:
                continue
            if op in ("=", "!="):
                if value not in allowed:
                    errors.append(
                        f"{where}: {name}{{{label}{op}{value!r}}}: not one of {sorted(allowed)}"
                    )
            else:
                try:
                    rx = re.compile(value)
                except re.error as e:
                    errors.append(f"{where}: bad regex {value!r}: {e}")
                    continue
                if not any(rx.fullmatch(v) for v in allowed):
                    errors.append(
                        f"{where}: {name}{{{label}{op}{value!r}}} matches none of {sorted(allowed)}"
                    )
                # Every alternative of a plain a|b|c regex must be a real value.
                if re.fullmatch(r"[A-Za-z0-9_./-]+(\|[A-Za-z0-9_./-]+)*", value.replace(r"\.", ".")):
                    for alt in value.split("|"):
                        alt_plain = alt.replace(r"\.", ".")
                        if not any(re.fullmatch(alt, v) for v in allowed) and alt_plain not in allowed:
                            errors.append(f"{where}: {name}{{{label}{op}...}}: {alt!r} is no value")
    for g in GROUPING.finditer(expr):
        for label in (x.strip() for x in g.group(1).split(",")):
            if label and label not in expr_labels:
                errors.append(f"{where}: groups by {label!r}, which no metric in it has: {expr.strip()}")


def split_matchers(body: str) -> list[str]:
    parts, cur, quoted, esc = [], "", False, False
    for ch in body:
        if esc:
            cur += ch
            esc = False
        elif ch == "\\":
            cur += ch
            esc = True
        elif ch == '"':
            cur += ch
            quoted = not quoted
        elif ch == "," and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return [p for p in parts if p.strip()]


def load_yaml(path: Path):
    with open(path) as f:
        return yaml.safe_load(f)


def load_yaml_all(path: Path) -> list:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def finish(errors: list[str]) -> None:
    for e in errors:
        print(e)
    sys.exit(1 if errors else 0)


# ---------------------------------------------------------------------------------------------
REQUIRED_ALERTS = {
    "InletIngestErrorRatioHigh": ["inlet_http_requests_total"],
    "InletRateLimitedSurge": ["inlet_http_requests_total"],
    "InletProducerQueueNearFull": [
        "inlet_kafka_queue_messages",
        "inlet_kafka_queue_max_messages",
        "inlet_kafka_queue_bytes",
        "inlet_kafka_queue_max_bytes",
    ],
    "InletNoBrokerReachable": ["inlet_kafka_ready"],
    "InletProduceLatencyHigh": ["inlet_kafka_produce_latency_seconds"],
    "InletReplicaDown": ["up"],
    "InletSpoolNearFull": ["inlet_spool_bytes", "inlet_spool_max_bytes"],
    "InletSpoolOldestRecordOld": ["inlet_spool_oldest_record_age_seconds"],
}


def cmd_alerts() -> None:
    """alerts.yml: the required alerts, each with severity, summary, description and `for`;
    alerts.test.yml: each alert tested firing and not firing; known metrics everywhere."""
    errors: list[str] = []
    rules = load_yaml(DEPLOY / "prometheus/alerts.yml")
    alerts = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                alerts[rule["alert"]] = rule
    for name, metrics in REQUIRED_ALERTS.items():
        rule = alerts.get(name)
        if rule is None:
            errors.append(f"alerts.yml: missing alert {name}")
            continue
        used: set[str] = set()
        check_expr(f"alerts.yml {name}", rule["expr"], errors, used)
        for metric in metrics:
            if metric not in used:
                errors.append(f"alerts.yml {name}: does not use {metric}")
    for name, rule in alerts.items():
        if name not in REQUIRED_ALERTS:
            check_expr(f"alerts.yml {name}", rule["expr"], errors, set())
        if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
            errors.append(f"alerts.yml {name}: severity label must be critical, warning or info")
        for key in ("summary", "description"):
            if not rule.get("annotations", {}).get(key):
                errors.append(f"alerts.yml {name}: no {key} annotation")
        if not rule.get("for"):
            errors.append(f"alerts.yml {name}: no `for`")
    if "InletNoBrokerReachable" in alerts and alerts["InletNoBrokerReachable"].get("for") != "1m":
        errors.append("alerts.yml InletNoBrokerReachable: `for` must be 1m")

    tests = load_yaml(DEPLOY / "prometheus/alerts.test.yml")
    fired: set[str] = set()
    silent: set[str] = set()
    for i, test in enumerate(tests["tests"]):
        for series in test.get("input_series", []):
            check_expr(f"alerts.test.yml test {i} input", series["series"], errors, set())
        for case in test.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else silent).add(case["alertname"])
    for name in alerts:
        if name not in fired:
            errors.append(f"alerts.test.yml: no test where {name} fires")
        if name not in silent:
            errors.append(f"alerts.test.yml: no test where {name} stays silent")
    finish(errors)


# ---------------------------------------------------------------------------------------------
REQUIRED_DASHBOARD_METRICS = [
    "inlet_http_requests_total",
    "inlet_events_total",
    "inlet_auth_failures_total",
    "inlet_kafka_delivery_failures_total",
    "inlet_http_request_duration_seconds",
    "inlet_kafka_produce_latency_seconds",
    "inlet_kafka_queue_messages",
    "inlet_kafka_queue_max_messages",
    "inlet_kafka_queue_bytes",
    "inlet_kafka_queue_max_bytes",
    "inlet_kafka_broker_up",
    "inlet_kafka_broker_rtt_seconds",
    "inlet_rate_limited_requests_total",
    "inlet_token_registry_reloads_total",
    "inlet_build_info",
    "inlet_http_requests_in_flight",
    "inlet_http_requests_shed_total",
    "inlet_dead_letters_total",
    "inlet_spool_bytes",
    "inlet_spool_records",
    "inlet_spool_oldest_record_age_seconds",
    "inlet_spool_sync_duration_seconds",
    "inlet_spool_group_commit_records",
    "inlet_spool_corrupt_bytes_total",
    "inlet_spool_refusals_total",
]


def dashboard_targets(dash: dict):
    for panel in dash["panels"]:
        for sub in [panel, *panel.get("panels", [])]:
            for t in sub.get("targets", []):
                yield sub, t


def cmd_dashboard() -> None:
    """inlet.json: parses, schemaVersion, a DS_PROMETHEUS datasource variable used by every
    panel and query, unique ids, grid positions, known metrics, the required panels."""
    errors: list[str] = []
    path = DEPLOY / "grafana/inlet.json"
    try:
        dash = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        finish([f"{path}: not JSON: {e}"])
    if not 36 <= dash.get("schemaVersion", 0) <= 41:
        errors.append(f"schemaVersion {dash.get('schemaVersion')} (expected about 39)")
    for key in ("title", "uid", "panels", "templating"):
        if key not in dash:
            errors.append(f"no {key!r}")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("DS_PROMETHEUS")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        errors.append("no DS_PROMETHEUS variable of type datasource (query prometheus)")
    want_ds = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    ids = set()
    used: set[str] = set()
    for panel in dash["panels"]:
        pid = panel.get("id")
        if pid in ids:
            errors.append(f"panel id {pid} used twice")
        ids.add(pid)
        gp = panel.get("gridPos", {})
        if not all(isinstance(gp.get(k), int) for k in ("x", "y", "w", "h")) or gp["x"] + gp["w"] > 24:
            errors.append(f"panel {panel.get('title')!r}: bad gridPos {gp}")
        if panel.get("type") != "row":
            if panel.get("datasource") != want_ds:
                errors.append(f"panel {panel.get('title')!r}: datasource is not ${{DS_PROMETHEUS}}")
            if not panel.get("targets"):
                errors.append(f"panel {panel.get('title')!r}: no queries")
    for panel, t in dashboard_targets(dash):
        where = f"panel {panel.get('title')!r} {t.get('refId')}"
        if t.get("datasource") != want_ds:
            errors.append(f"{where}: datasource is not ${{DS_PROMETHEUS}}")
        if not t.get("expr"):
            errors.append(f"{where}: no expr")
            continue
        check_expr(where, t["expr"], errors, used)
    for name, var in variables.items():
        q = var.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if var.get("type") == "query" and q:
            check_expr(f"variable {name}", q, errors, used)
    for metric in REQUIRED_DASHBOARD_METRICS:
        if metric not in used:
            errors.append(f"no panel shows {metric}")
    if not any("topk(" in t.get("expr", "") and "inlet_rate_limited_requests_total" in t.get("expr", "")
               for _, t in dashboard_targets(dash)):
        errors.append("no topk panel of rate-limited tokens")
    for q in ("0.5", "0.99"):
        if not any(f"histogram_quantile({q}," in t.get("expr", "") and "inlet_http_request_duration_seconds" in t["expr"]
                   for _, t in dashboard_targets(dash)):
            errors.append(f"no p{q[2:] or '50'} request latency panel")
    finish(errors)


def cmd_dashboard_rules(out: str) -> None:
    """Write the dashboard's queries, Grafana variables substituted, as recording rules, so that
    `promtool check rules` parses every one of them as PromQL."""
    dash = json.loads((DEPLOY / "grafana/inlet.json").read_text())
    rules = []
    for panel, t in dashboard_targets(dash):
        expr = t["expr"]
        for var, value in sorted(GRAFANA_VARS.items(), key=lambda kv: -len(kv[0])):
            expr = expr.replace(var, value)
        if "$" in expr:
            print(f"panel {panel.get('title')!r}: unknown Grafana variable in {expr}")
            sys.exit(1)
        rules.append({"record": f"dashboard:panel{panel['id']}:{t['refId']}", "expr": expr})
    Path(out).write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))


def cmd_grafana_provisioning() -> None:
    errors: list[str] = []
    prov = DEPLOY / "grafana/provisioning"
    ds = load_yaml(prov / "datasources/prometheus.yml")
    if ds.get("apiVersion") != 1 or not ds.get("datasources"):
        errors.append("datasources/prometheus.yml: apiVersion 1 with datasources expected")
    else:
        d = ds["datasources"][0]
        if d.get("type") != "prometheus" or not d.get("url") or not d.get("isDefault"):
            errors.append("datasources/prometheus.yml: a default prometheus datasource with a url expected")
    dp = load_yaml(prov / "dashboards/inlet.yml")
    providers = dp.get("providers") or []
    if dp.get("apiVersion") != 1 or not providers or providers[0].get("type") != "file":
        errors.append("dashboards/inlet.yml: apiVersion 1 with a file provider expected")
    else:
        path = providers[0].get("options", {}).get("path")
        compose = load_yaml(DEPLOY / "compose/docker-compose.yml")
        mounts = [v.split(":")[1] for v in compose["services"]["grafana"].get("volumes", []) if ":" in v]
        if f"{path}/inlet.json" not in mounts:
            errors.append(f"compose does not mount inlet.json under the provider's path {path}")
    finish(errors)


# ---------------------------------------------------------------------------------------------
def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def dockerignore_allows(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches decides (a `!` pattern re-includes)."""
    import fnmatch

    allowed = True
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.strip("/")
        if fnmatch.fnmatch(path, p) or path.startswith(p + "/"):
            allowed = neg
    return allowed


def cmd_dockerfile() -> None:
    errors: list[str] = []
    path = DEPLOY / "docker/Dockerfile"
    ins = dockerfile_instructions(path.read_text())
    froms = [rest for word, rest in ins if word == "FROM"]
    if len(froms) < 2 or not froms[0].startswith("rust:1-bookworm") or froms[-1] != "debian:bookworm-slim":
        errors.append(f"stages {froms}: expected rust:1-bookworm builder and debian:bookworm-slim runtime")
    runs = " ".join(rest for word, rest in ins if word == "RUN")
    for pkg in ("make", "g++", "pkg-config", "zlib1g-dev", "libssl-dev", "libssl3", "ca-certificates"):
        if not re.search(rf"(?<![\w.+-]){re.escape(pkg)}(?![\w.+-])", runs):
            errors.append(f"no apt package {pkg}")
    if "cargo build --release --locked" not in runs:
        errors.append("no `cargo build --release --locked`")
    users = [rest for word, rest in ins if word == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        errors.append("the runtime does not switch to a non-root USER")
    exposed = {p for word, rest in ins if word == "EXPOSE" for p in rest.split()}
    if not {"8080", "9100"} <= exposed:
        errors.append(f"EXPOSE {sorted(exposed)}: 8080 and 9100 expected")
    if ("STOPSIGNAL", "SIGTERM") not in ins:
        errors.append("no STOPSIGNAL SIGTERM")
    hc = [rest for word, rest in ins if word == "HEALTHCHECK"]
    if not hc or "CMD [" not in hc[0]:
        errors.append("no exec-form HEALTHCHECK")
    elif re.search(r"\b(curl|wget)\b", hc[0]):
        errors.append("HEALTHCHECK uses curl/wget, which the image does not have")
    elif "/healthz" not in hc[0]:
        errors.append("HEALTHCHECK does not ask /healthz")
    ignore = DEPLOY / "docker/Dockerfile.dockerignore"
    patterns = [
        ln.strip() for ln in ignore.read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    for word, rest in ins:
        if word != "COPY" or rest.startswith("--from"):
            continue
        args = [a for a in rest.split() if not a.startswith("--")]
        for src in args[:-1]:
            if not (ROOT / src).exists():
                errors.append(f"COPY {src}: not in the build context (the repository root)")
            elif not dockerignore_allows(src, patterns):
                errors.append(f"COPY {src}: excluded by Dockerfile.dockerignore")
    for needed in ("Cargo.toml", "Cargo.lock", "build.rs", "proto", "src"):
        if not any(needed in rest.split() for word, rest in ins if word == "COPY"):
            errors.append(f"the build does not COPY {needed}")
    if dockerignore_allows("target", patterns):
        errors.append("Dockerfile.dockerignore lets target/ into the context")
    finish(errors)


def cmd_healthcheck_cmd() -> None:
    """Print the Dockerfile HEALTHCHECK's exec-form command, NUL-separated, for check.sh to run."""
    ins = dockerfile_instructions((DEPLOY / "docker/Dockerfile").read_text())
    hc = next(rest for word, rest in ins if word == "HEALTHCHECK")
    argv = json.loads(hc[hc.index("CMD ") + 4 :])
    sys.stdout.write("\0".join(argv))


# ---------------------------------------------------------------------------------------------
def cmd_compose() -> None:
    errors: list[str] = []
    path = DEPLOY / "compose/docker-compose.yml"
    base = path.parent
    compose = load_yaml(path)
    services = compose["services"]
    brokers = [n for n in services if re.fullmatch(r"kafka-\d+", n)]
    if len(brokers) != 3:
        errors.append(f"{len(brokers)} Kafka brokers, 3 expected")
    voters_seen = set()
    for name in brokers:
        svc = services[name]
        env = {k: str(v) for k, v in svc.get("environment", {}).items()}
        if not svc.get("image", "").startswith("apache/kafka:"):
            errors.append(f"{name}: image {svc.get('image')} is not apache/kafka")
        if set(env.get("KAFKA_PROCESS_ROLES", "").split(",")) != {"broker", "controller"}:
            errors.append(f"{name}: KAFKA_PROCESS_ROLES must be broker,controller")
        voters = env.get("KAFKA_CONTROLLER_QUORUM_VOTERS", "")
        voters_seen.add(voters)
        node = env.get("KAFKA_NODE_ID")
        host = svc.get("hostname", name)
        if f"{node}@{host}:" not in voters:
            errors.append(f"{name}: node {node}@{host} is not among the quorum voters {voters}")
        listeners = env.get("KAFKA_LISTENERS", "")
        names = {x.split("://")[0] for x in listeners.split(",") if x}
        if env.get("KAFKA_CONTROLLER_LISTENER_NAMES") not in names:
            errors.append(f"{name}: controller listener not in KAFKA_LISTENERS")
        ctrl_port = next((x.rsplit(":", 1)[1] for x in listeners.split(",") if x.startswith("CONTROLLER://")), None)
        for v in voters.split(","):
            if ctrl_port and not v.endswith(f":{ctrl_port}"):
                errors.append(f"{name}: voter {v} does not use the controller port {ctrl_port}")
        adv = env.get("KAFKA_ADVERTISED_LISTENERS", "")
        if f"//{host}:" not in adv:
            errors.append(f"{name}: advertised listeners {adv} do not name {host}")
        try:
            cid = env.get("CLUSTER_ID", "")
            if len(base64.urlsafe_b64decode(cid + "==")) != 16 or len(cid) != 22:
                raise ValueError
        except ValueError:
            errors.append(f"{name}: CLUSTER_ID must be a base64url-encoded 16-byte UUID")
        if int(env.get("KAFKA_MESSAGE_MAX_BYTES", "1048588")) < 1048576:
            errors.append(f"{name}: message.max.bytes under 1 MiB")
    if len(voters_seen) != 1:
        errors.append("brokers disagree on KAFKA_CONTROLLER_QUORUM_VOTERS")
    elif brokers and len(next(iter(voters_seen)).split(",")) != len(brokers):
        errors.append("quorum voters are not the three brokers")

    ct = services.get("create-topics")
    if not ct:
        errors.append("no create-topics service")
    else:
        if "create-topics.sh" not in " ".join(map(str, ct.get("entrypoint", []) or [ct.get("command", "")])):
            errors.append("create-topics does not run create-topics.sh")
        env = {k: str(v) for k, v in ct.get("environment", {}).items()}
        if env.get("REPLICATION_FACTOR", "3") != "3" or env.get("MIN_INSYNC_REPLICAS", "2") != "2":
            errors.append("create-topics: RF 3 / min.insync.replicas 2 expected")
        if not env.get("KAFKA_BOOTSTRAP"):
            errors.append("create-topics: no KAFKA_BOOTSTRAP")
        for b in brokers:
            if (ct.get("depends_on") or {}).get(b, {}).get("condition") != "service_healthy":
                errors.append(f"create-topics does not wait for {b} to be healthy")

    inlets = [n for n in services if re.fullmatch(r"inlet-\d+", n)]
    if len(inlets) < 2:
        errors.append("fewer than two inlet replicas")
    for name in inlets:
        svc = services[name]
        build = svc.get("build", {})
        dockerfile = (base / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).resolve()
        if dockerfile != (DEPLOY / "docker/Dockerfile").resolve():
            errors.append(f"{name}: not built from deploy/docker/Dockerfile with the repo root as context")
        if (base / build.get("context", ".")).resolve() != ROOT:
            errors.append(f"{name}: build context is not the repository root")
        if (svc.get("depends_on") or {}).get("create-topics", {}).get("condition") != "service_completed_successfully":
            errors.append(f"{name}: does not wait for create-topics to complete")
        env = svc.get("environment", {})
        check_env(name, env, inlet_env_names(), errors)
        tokens = env.get("INLET_TOKENS_FILE")
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc.get("volumes", [])}
        if tokens not in mounts or not mounts[tokens].endswith("tokens.example.toml"):
            errors.append(f"{name}: INLET_TOKENS_FILE is not the mounted deploy/tokens.example.toml")
        for broker in env.get("INLET_KAFKA_BROKERS", "").split(","):
            if broker.split(":")[0] not in brokers:
                errors.append(f"{name}: broker {broker} is no service")

    lb = services.get("lb", {})
    if not any(str(p).startswith("8080:") for p in lb.get("ports", [])):
        errors.append("the load balancer does not publish :8080")
    prom = services.get("prometheus", {})
    if not any("alerts.yml" in v for v in prom.get("volumes", [])):
        errors.append("prometheus does not mount alerts.yml")
    # Every bind-mounted host path exists.
    for name, svc in services.items():
        for v in svc.get("volumes", []) or []:
            src = v.split(":")[0]
            if src.startswith((".", "/")) and not (base / src).exists():
                errors.append(f"{name}: mounts {src}, which does not exist")
    finish(errors)


# ---------------------------------------------------------------------------------------------
def cmd_k8s() -> None:
    errors: list[str] = []
    k8s = DEPLOY / "k8s"
    docs = {p.name: load_yaml_all(p) for p in sorted(k8s.glob("*.yaml"))}
    kinds = {name: [d.get("kind") for d in ds] for name, ds in docs.items()}
    expected = {
        "deployment.yaml": ["Deployment"],
        "service.yaml": ["Service"],
        "hpa.yaml": ["HorizontalPodAutoscaler"],
        "pdb.yaml": ["PodDisruptionBudget"],
        "configmap.yaml": ["ConfigMap"],
        "secret.yaml": ["Secret"],
        "kafka-secret.yaml": ["Secret"],
        "servicemonitor.yaml": ["ServiceMonitor"],
        "kustomization.yaml": ["Kustomization"],
    }
    for name, want in expected.items():
        if kinds.get(name) != want:
            errors.append(f"{name}: kinds {kinds.get(name)}, expected {want}")
    if errors:
        finish(errors)
    dep = docs["deployment.yaml"][0]
    pod = dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    if dep["spec"].get("replicas", 1) < 2:
        errors.append("deployment: fewer than 2 replicas")
    c = pod["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    if ports.get("http") != 8080 or ports.get("admin") != 9100:
        errors.append(f"deployment: ports {ports}, expected http 8080 and admin 9100")

    def probe(kind: str, path: str) -> None:
        p = c.get(kind, {}).get("httpGet", {})
        port = ports.get(p.get("port"), p.get("port"))
        if p.get("path") != path or port != 9100:
            errors.append(f"deployment: {kind} must GET {path} on 9100, has {p}")

    probe("readinessProbe", "/readyz")
    probe("livenessProbe", "/healthz")
    quantity = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([mkMGTPE]|[KMGTPE]i|[eE][+-]?\d+)?")
    for key in ("requests", "limits"):
        res = c.get("resources", {}).get(key, {})
        if not {"cpu", "memory"} <= set(res):
            errors.append(f"deployment: resources.{key} needs cpu and memory")
        for name, value in res.items():
            if not quantity.fullmatch(str(value)):
                errors.append(f"deployment: resources.{key}.{name} {value!r} is not a quantity")
    sc, psc = c.get("securityContext", {}), pod.get("securityContext", {})
    if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
        errors.append("deployment: runAsNonRoot not set")
    if not sc.get("readOnlyRootFilesystem"):
        errors.append("deployment: readOnlyRootFilesystem not set")
    if sc.get("allowPrivilegeEscalation") is not False:
        errors.append("deployment: allowPrivilegeEscalation not false")
    cmd = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_stop = int(cmd[-1]) if cmd and cmd[0] == "sleep" and cmd[-1].isdigit() else None
    if pre_stop is None or not 5 <= pre_stop <= 20:
        errors.append(f"deployment: preStop should be `sleep N` with N about 10, is {cmd}")
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    check_env("deployment", env, inlet_env_names(), errors)
    config_file = env.get("INLET_CONFIG")
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    cm = docs["configmap.yaml"][0]
    try:
        inlet_toml = tomllib.loads(cm["data"]["inlet.toml"])
    except (KeyError, tomllib.TOMLDecodeError) as e:
        finish([f"configmap: inlet.toml does not parse: {e}"])
    grace_ms = int(env.get("INLET_SHUTDOWN_GRACE_MS") or inlet_toml.get("shutdown_grace_ms", 25000))
    need = (pre_stop or 0) + grace_ms / 1000
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    if tgps < max(45, need + 5):
        errors.append(f"deployment: terminationGracePeriodSeconds {tgps} < preStop + grace ({need:g} s) + margin")
    if config_file not in mounts:
        errors.append(f"deployment: INLET_CONFIG {config_file} is not mounted")
    # The configmap uses only keys of the complete example file, and its tokens_file is mounted.
    example = tomllib.loads((DEPLOY / "inlet.example.toml").read_text())
    for key in inlet_toml:
        if key not in example:
            errors.append(f"configmap inlet.toml: {key!r} is not an inlet setting (deploy/inlet.example.toml)")
    tokens_file = env.get("INLET_TOKENS_FILE") or inlet_toml.get("tokens_file", "")
    tokens_mount = next((m for p, m in mounts.items() if tokens_file.startswith(p.rstrip("/") + "/")), None)
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    sec = docs["secret.yaml"][0]
    if tokens_mount is None or vols.get(tokens_mount["name"], {}).get("secret", {}).get("secretName") != sec["metadata"]["name"]:
        errors.append(f"deployment: tokens_file {tokens_file} is not in a directory mount of the Secret")
    elif tokens_mount.get("subPath"):
        errors.append("deployment: the tokens Secret is mounted with subPath (updates would not reach it)")
    key = tokens_file.rsplit("/", 1)[-1]
    try:
        registry = tomllib.loads(sec.get("stringData", {})[key])
    except (KeyError, tomllib.TOMLDecodeError) as e:
        finish(errors + [f"secret: stringData.{key} missing or not TOML: {e}"])
    for t in registry.get("token", []):
        missing = {"id", "project_id", "account_id", "kinds", "rate_per_sec", "burst"} - set(t)
        if missing:
            errors.append(f"secret: token {t.get('id')} lacks {sorted(missing)}")
        if not re.fullmatch(r"[0-9a-f]{64}", t.get("sha256", "")):
            errors.append(f"secret: token {t.get('id')}: sha256 must be 64 hex digits")
        if "token" in t:
            errors.append(f"secret: token {t.get('id')}: a plain `token` in a production manifest")
    if vols.get("config", {}).get("configMap", {}).get("name") != cm["metadata"]["name"]:
        errors.append("deployment: the config volume is not the ConfigMap")

    svc = docs["service.yaml"][0]
    if svc["spec"]["selector"].items() - labels.items():
        errors.append("service: selector does not match the pod labels")
    svc_ports = {p["name"]: p for p in svc["spec"]["ports"]}
    for name in ("http", "admin"):
        if name not in svc_ports or svc_ports[name].get("targetPort") not in (name, ports.get(name)):
            errors.append(f"service: no {name} port targeting the container's")
    hpa = docs["hpa.yaml"][0]
    if hpa["apiVersion"] != "autoscaling/v2" or hpa["spec"]["scaleTargetRef"]["name"] != dep["metadata"]["name"]:
        errors.append("hpa: autoscaling/v2 targeting the deployment expected")
    if hpa["spec"].get("minReplicas", 1) < 2:
        errors.append("hpa: minReplicas < 2")
    if not any(m.get("resource", {}).get("name") == "cpu" for m in hpa["spec"].get("metrics", [])):
        errors.append("hpa: no CPU metric")
    pdb = docs["pdb.yaml"][0]
    if pdb["apiVersion"] != "policy/v1" or pdb["spec"]["selector"]["matchLabels"].items() - labels.items():
        errors.append("pdb: policy/v1 selecting the pods expected")
    sm = docs["servicemonitor.yaml"][0]
    if sm["apiVersion"] != "monitoring.coreos.com/v1":
        errors.append("servicemonitor: apiVersion monitoring.coreos.com/v1 expected")
    if sm["spec"]["selector"]["matchLabels"].items() - svc["metadata"]["labels"].items():
        errors.append("servicemonitor: selector does not match the Service's labels")
    for ep in sm["spec"].get("endpoints", []):
        if ep.get("port") not in svc_ports or svc_ports[ep["port"]].get("port") != 9100:
            errors.append(f"servicemonitor: endpoint port {ep.get('port')} is not the Service's admin port")
        if ep.get("path", "/metrics") != "/metrics":
            errors.append("servicemonitor: path is not /metrics")
    job_label = sm["spec"].get("jobLabel")
    job = svc["metadata"]["labels"].get(job_label) if job_label else svc["metadata"]["name"]
    if job != "inlet":
        errors.append(f"servicemonitor: the job label would be {job!r}; the alerts select job=\"inlet\"")
    kust = docs["kustomization.yaml"][0]
    listed = set(kust.get("resources", []))
    for name in expected:
        if name != "kustomization.yaml" and name not in listed:
            errors.append(f"kustomization: {name} not in resources")
    for name in listed:
        if not (k8s / name).exists():
            errors.append(f"kustomization: {name} does not exist")
    finish(errors)


def cmd_k8s_split(rendered: str, outdir: str) -> None:
    """Split a rendered multi-document stream into one file per resource, leaving out the
    ServiceMonitor (no schema for a CRD), and print the number of files."""
    docs = load_yaml_all(Path(rendered))
    n = 0
    for d in docs:
        if d.get("kind") == "ServiceMonitor":
            continue
        n += 1
        Path(outdir, f"{n:02d}-{d['kind'].lower()}.yaml").write_text(yaml.safe_dump(d))
    print(n)


def inlet_env_names() -> set[str]:
    """The INLET_* environment variables inlet's source reads."""
    names = set()
    for path in (ROOT / "src").rglob("*.rs"):
        names |= set(re.findall(r'"(INLET_[A-Z0-9_]+)"', path.read_text()))
    return names


def check_env(where: str, env, known: set[str], errors: list[str]) -> None:
    for name in env:
        if name.startswith("INLET_") and name not in known:
            errors.append(f"{where}: {name} is not an environment variable inlet reads (src/)")


def cmd_metrics_source() -> None:
    """Every metric this file knows (and so the dashboard and rules may use) is still named in
    src/metrics.rs; prints the ones src/metrics.rs has that this file does not know."""
    source = (ROOT / "src/metrics.rs").read_text()
    names = set(re.findall(r'"(inlet_[a-z0-9_]+)"', source))
    errors = [
        f"{name}: not in src/metrics.rs (renamed or removed?)"
        for name in METRICS
        if name != "up" and name not in names
    ]
    if errors:
        finish(errors)
    extra = sorted(names - set(METRICS))
    if extra:
        print("not yet known to deploy/check.py: " + ", ".join(extra))


COMMANDS = {
    "alerts": cmd_alerts,
    "dashboard": cmd_dashboard,
    "dashboard-rules": cmd_dashboard_rules,
    "grafana-provisioning": cmd_grafana_provisioning,
    "dockerfile": cmd_dockerfile,
    "healthcheck-cmd": cmd_healthcheck_cmd,
    "compose": cmd_compose,
    "k8s": cmd_k8s,
    "k8s-split": cmd_k8s_split,
    "metrics-source": cmd_metrics_source,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(COMMANDS)}}} [ARGS]")
    COMMANDS[sys.argv[1]](*sys.argv[2:])
