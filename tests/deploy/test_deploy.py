"""deploy/ checked against the tools and the server it configures:
promtool accepts the Prometheus config and the alert rules and passes the
rules' unit tests; every metric that a dashboard panel, a dashboard variable
or an alert queries is one that conclave-server exports (read from a running
server's /metrics on 127.0.0.1), and the dashboard shows every metric the
server exports; the Kubernetes manifests probe the gRPC health service and
scrape the port the server serves metrics on; the flags the images and the
manifests pass are flags the server knows.

promtool comes with the Debian package `prometheus`; the checks that need
it, the server binary or the model skip when they are missing."""

import json
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

yaml = pytest.importorskip("yaml")

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "loadtest"))
import conclave_api  # noqa: E402  (the server process, shared with loadtest/ and tests/server)

DEPLOY = REPO / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "conclave.json"
K8S = DEPLOY / "k8s"
MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
# Series Prometheus itself makes for every target, not the server.
PROMETHEUS_SERIES = {"up"}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                   "unless", "bool", "offset", "inf", "nan"}


def promtool(*args):
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool not installed (Debian package `prometheus`)")
    result = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60,
                            cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_promtool_accepts_the_prometheus_config():
    out = promtool("check", "config", "prometheus.yml")
    assert "SUCCESS" in out


def test_promtool_accepts_the_alert_rules():
    out = promtool("check", "rules", "alerts.yml")
    assert f"SUCCESS: {len(alert_rules())} rules found" in out


def test_the_alert_rules_pass_their_unit_tests():
    promtool("test", "rules", "alerts_test.yml")


def test_every_alert_is_unit_tested_firing():
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    fired = {case["alertname"] for t in tests for case in t.get("alert_rule_test", [])
             if case.get("exp_alerts")}
    assert fired == {r["alert"] for r in alert_rules()}


# --- metric names -------------------------------------------------------------


def alert_rules():
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [r for g in groups for r in g["rules"]]


def metric_names(expr):
    """The series names a PromQL expression selects: what is left once
    strings, label matchers, ranges, grouping clauses, function calls and
    keywords are taken out."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^{}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        if e[m.end():].lstrip().startswith("("):
            continue  # a function
        if m.group(0).lower() not in PROMQL_KEYWORDS:
            names.add(m.group(0))
    return names


def test_metric_names_finds_the_selected_series_only():
    expr = ('histogram_quantile(0.99, sum by (le, mode) (rate(a_bucket{model=~"$model", '
            'x="y{z}"}[$__rate_interval]))) / on (mode) group_left sum(b_total) > bool 0.5 '
            'unless c offset 5m')
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{family name: type} from a running conclave-server's /metrics. It
    serves with an API key store of one key, as a deployment does, so that
    the per-key families have series."""
    binary = conclave_api.build_dir() / "bin" / "conclave-server"
    cli = conclave_api.build_dir() / "bin" / "conclave"
    for path in (binary, cli):
        if not path.exists():
            pytest.skip(f"{path} not built")
    if not MODEL.exists():
        pytest.skip(f"model {MODEL.name} not present (scripts/fetch_models.sh)")
    tmp = tmp_path_factory.mktemp("server")
    store = tmp / "keys.json"
    subprocess.run([str(cli), "keys", "issue", "--store", str(store), "--name", "deploy-test"],
                   check=True, capture_output=True, timeout=30)
    log = tmp / "server.log"
    with conclave_api.ServerProcess(MODEL, ["--threads", "1", "--kv-cache-mib", "64",
                                            "--api-keys", str(store)], log,
                                    start_timeout=60) as server:
        import urllib.request
        with urllib.request.urlopen(f"http://{server.metrics_address}/metrics", timeout=10) as r:
            text = r.read().decode("utf-8")
    families = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    assert any(name.startswith("conclave_") for name in families), text[:2000]
    return families


def series_names(families):
    """Every series name the families produce (histograms: _bucket, _sum,
    _count)."""
    names = set()
    for name, kind in families.items():
        if kind == "histogram":
            names |= {name + "_bucket", name + "_sum", name + "_count"}
        else:
            names.add(name)
    return names


def dashboard_exprs():
    dash = json.loads(DASHBOARD.read_text())
    exprs = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            exprs.append((panel["title"], target["expr"]))
    for var in dash["templating"]["list"]:
        if var.get("type") == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
            assert m, f"variable {var['name']}: {query}"
            exprs.append((f"variable {var['name']}", m.group(1)))
    return exprs


def test_every_dashboard_query_names_exported_metrics(exported):
    known = series_names(exported)
    exprs = dashboard_exprs()
    assert len(exprs) > 20
    for where, expr in exprs:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr}"
        assert names <= known, f"{where}: {sorted(names - known)} not exported"


def test_every_alert_names_exported_metrics(exported):
    known = series_names(exported) | PROMETHEUS_SERIES
    for rule in alert_rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= known, f"{rule['alert']}: {sorted(names - known)} not exported"


def test_the_dashboard_shows_every_exported_conclave_metric(exported):
    shown = set()
    for _, expr in dashboard_exprs():
        shown |= metric_names(expr)
    for name, kind in exported.items():
        if not name.startswith("conclave_"):
            continue
        produced = series_names({name: kind})
        assert produced & shown, f"no dashboard panel queries {name}"


def test_every_dashboard_panel_has_a_unique_id_and_a_place():
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}", p["title"]
            assert p.get("description"), p["title"]


# --- Kubernetes manifests and images -----------------------------------------


def manifests(folder):
    docs = []
    for path in sorted((K8S / folder).glob("*.yaml")):
        docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def one(kind):
    found = [d for _, d in manifests("cpu") if d["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


def test_the_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "cpu" / "kustomization.yaml").read_text())
    files = {p.name for p in (K8S / "cpu").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_the_deployment_probes_grpc_health_and_sets_resources():
    deployment = one("Deployment")
    pod = deployment["spec"]["template"]
    [container] = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == ports["grpc"], probe
    # Readiness asks for the API service by name, as the server registers it.
    assert container["readinessProbe"]["grpc"]["service"] == "conclave.v1.Conclave"
    resources = container["resources"]
    for key in ("cpu", "memory"):
        assert resources["requests"][key] and resources["limits"][key]
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    assert annotations["prometheus.io/path"] == "/metrics"
    labels = pod["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in deployment["spec"]["selector"]["matchLabels"].items())


def test_the_service_and_servicemonitor_reach_the_metrics_port():
    deployment, service, monitor = one("Deployment"), one("Service"), one("ServiceMonitor")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    container_ports = {p["name"] for p in container["ports"]}
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert {p["targetPort"] for p in service_ports.values()} <= container_ports
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in service["spec"]["selector"].items())
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in service_ports and endpoint["path"] == "/metrics"
    assert all(service["metadata"]["labels"].get(k) == v
               for k, v in monitor["spec"]["selector"]["matchLabels"].items())


def test_every_port_the_images_open_is_declared_and_served():
    """The ports of the images' ENTRYPOINT flags (--grpc-port, --http-port,
    --metrics-port) are container ports of the Deployment and ports of the
    Service."""
    opened = set()
    for name in ("Dockerfile.cpu", "Dockerfile.cuda"):
        text = (DEPLOY / "docker" / name).read_text()
        for line in re.findall(r"^ENTRYPOINT (\[.*\])$", text, re.M):
            args = json.loads(line)
            opened |= {int(args[i + 1]) for i, a in enumerate(args) if a.endswith("-port")}
    assert {50051, 8080, 9400} <= opened
    [container] = one("Deployment")["spec"]["template"]["spec"]["containers"]
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert set(container_ports.values()) == opened
    served = {container_ports[p["targetPort"]] for p in one("Service")["spec"]["ports"]}
    assert served == opened


def test_kubectl_renders_both_kustomizations():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    for folder in ("cpu", "cuda"):
        result = subprocess.run([kubectl, "kustomize", str(K8S / folder)], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        kinds = [d["kind"] for d in yaml.safe_load_all(result.stdout) if d]
        assert sorted(kinds) == ["Deployment", "PersistentVolumeClaim", "Service",
                                 "ServiceMonitor"]
        if folder == "cuda":
            assert "nvidia.com/gpu" in result.stdout and "image: conclave:cuda" in result.stdout


def server_flags():
    binary = conclave_api.build_dir() / "bin" / "conclave-server"
    if not binary.exists():
        pytest.skip(f"{binary} not built")
    result = subprocess.run([str(binary), "--helpfull"], capture_output=True, text=True,
                            timeout=30)
    return {f.replace("_", "-") for f in re.findall(r"^\s+--?(\w+)", result.stdout, re.M)}


def passed_flags():
    """Every --flag the images and the manifests give conclave-server."""
    flags = set()
    for name in ("Dockerfile.cpu", "Dockerfile.cuda"):
        text = (DEPLOY / "docker" / name).read_text()
        for line in re.findall(r"^(?:ENTRYPOINT|CMD) (\[.*\])$", text, re.M):
            flags |= {a.split("=")[0][2:] for a in json.loads(line) if a.startswith("--")}
    [container] = one("Deployment")["spec"]["template"]["spec"]["containers"]
    flags |= {a.split("=")[0][2:] for a in container["args"]}
    return flags


def test_the_images_and_manifests_pass_flags_the_server_knows():
    flags = passed_flags()
    assert {"model", "bind", "grpc-port", "metrics-port", "threads"} <= flags
    unknown = flags - server_flags()
    assert not unknown, f"conclave-server does not know --{', --'.join(sorted(unknown))}"
