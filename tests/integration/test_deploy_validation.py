"""The rendered manifests pass the validators platform teams run: kustomize, kubernetes-validate, checkov.

Every kustomization (the base, each overlay, the observability stack) is rendered once per module with the
kubectl of the dev extra; kubernetes-validate checks every resource against the API schemas (strict: no
unknown field), and one checkov run over all the rendered files must report zero failed checks. A check
that does not apply is skipped inline in the manifest (a `checkov.io/skip` annotation) with its reason.
The tools come from the dev extra, never from the machine: a missing one fails, it does not skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError

from service.settings import PRODUCTION_API_URL, STAGING_API_URL, load_settings

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
KUSTOMIZATIONS = {
    "base": ROOT / "k8s" / "base",
    "staging": ROOT / "k8s" / "overlays" / "staging",
    "production": ROOT / "k8s" / "overlays" / "production",
    "otel": ROOT / "otel" / "k8s",
}
OVERLAYS = ("staging", "production")
# prometheus-operator's custom resources: kubernetes-validate has the built-in API schemas only, so these
# are the kinds allowed to have none; their shape is checked by the tests below instead.
CUSTOM_KINDS = frozenset(
    {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
)
SECRET_MOUNT = "/var/run/secrets/wiseflow"
JOB_SECRET_FILES = frozenset({"WISEFLOW_CLIENT_SECRET_FILE", "WISEFLOW_WEBHOOK_SECRET_FILE"})
SERVICE_SECRET_FILES = JOB_SECRET_FILES | {"SYNC_SINK_TOKEN_FILE"}
DIGEST_LENGTH = len("sha256:") + 64

Doc = dict[str, Any]


def _tool(name: str) -> Path:
    """A validator installed by the dev extra next to this interpreter; its absence is a failure."""
    path = BIN / name
    assert path.exists(), f"{name} is missing from {BIN}: install the dev extra (pip install -e '.[dev]')"
    return path


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each kustomization rendered once by `kubectl kustomize`, as one file per kustomization."""
    out = tmp_path_factory.mktemp("rendered")
    kubectl = _tool("kubectl")
    files: dict[str, Path] = {}
    for name, directory in KUSTOMIZATIONS.items():
        result = subprocess.run(  # noqa: S603 - fixed arguments, our own files
            [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, f"kubectl kustomize {directory.relative_to(ROOT)}: {result.stderr}"
        files[name] = out / f"{name}.yaml"
        files[name].write_text(result.stdout)
    return files


@pytest.fixture(scope="module")
def docs(rendered: dict[str, Path]) -> dict[str, list[Doc]]:
    """The rendered resources of each kustomization."""
    return {name: [d for d in yaml.safe_load_all(path.read_text()) if d] for name, path in rendered.items()}


@pytest.fixture(scope="module")
def checkov(rendered: dict[str, Path]) -> dict[str, Any]:
    """One checkov run (Kubernetes framework) over every rendered file; its JSON report."""
    directory = next(iter(rendered.values())).parent
    result = subprocess.run(  # noqa: S603 - fixed arguments, our own files
        [_tool("checkov"), "--framework", "kubernetes", "-d", str(directory), "-o", "json", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.stdout.strip(), (
        f"checkov printed no report (exit {result.returncode}): {result.stderr[-2000:]}"
    )
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _find(docs: list[Doc], kind: str, name: str) -> Doc:
    """The one resource of that kind and name."""
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def _pod(doc: Doc) -> Doc:
    """The pod spec of a Deployment or Job."""
    spec: Doc = doc["spec"]["template"]["spec"]
    return spec


def _workloads(docs: list[Doc]) -> list[Doc]:
    """Every resource that runs a pod."""
    return [d for d in docs if d["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet", "CronJob"}]


def test_every_overlay_is_validated() -> None:
    """A new overlay directory cannot escape validation: each one is in KUSTOMIZATIONS."""
    present = {p.name for p in (ROOT / "k8s" / "overlays").iterdir() if p.is_dir()}
    assert present == set(OVERLAYS)


def test_kubernetes_validate_strict_accepts_every_resource(docs: dict[str, list[Doc]]) -> None:
    """Every built-in resource matches its API schema with no unknown field; only custom kinds lack one."""
    version = kubernetes_validate.latest_version()
    for name, resources in docs.items():
        assert resources, f"{name} rendered nothing"
        for doc in resources:
            where = f"{name}: {doc['kind']}/{doc['metadata']['name']}"
            if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
                with pytest.raises(SchemaNotFoundError):
                    kubernetes_validate.validate(doc, version, strict=True)
                continue
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{where}: {exc.message} at {'.'.join(map(str, exc.path))}")


def test_checkov_reports_no_failed_check(checkov: dict[str, Any]) -> None:
    """checkov's Kubernetes policies: zero failed, and every skipped check says why (inline)."""
    summary, results = checkov["summary"], checkov["results"]
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in results["failed_checks"]]
    assert failed == []
    assert summary["parsing_errors"] == 0
    # A run that checked nothing would also have no failure.
    assert summary["passed"] >= 400
    for check in results["skipped_checks"]:
        assert (check.get("check_result", {}).get("suppress_comment") or "").strip(), check["check_id"]


@pytest.mark.parametrize("name", [*OVERLAYS, "base", "otel"])
def test_never_the_default_namespace_and_images_by_digest(docs: dict[str, list[Doc]], name: str) -> None:
    """Every namespaced resource names a namespace; every container's image is pinned by digest."""
    for doc in docs[name]:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") not in (None, "", "default"), doc["metadata"]["name"]
    for workload in _workloads(docs[name]):
        for container in _pod(workload)["containers"]:
            image = container["image"]
            assert "@sha256:" in image, image
            assert len(image.split("@", 1)[1]) == DIGEST_LENGTH, image
            assert container["imagePullPolicy"] == "Always"


@pytest.mark.parametrize("name", [*OVERLAYS, "base"])
def test_secrets_are_files_never_environment_values(docs: dict[str, list[Doc]], name: str) -> None:
    """No container reads the Secret into its environment; the *_FILE paths lie in the mounted Secret."""
    for workload in _workloads(docs[name]):
        pod = _pod(workload)
        (container,) = pod["containers"]
        assert all("secretRef" not in ref for ref in container.get("envFrom", []))
        assert all("secretKeyRef" not in e.get("valueFrom", {}) for e in container.get("env", []))
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert mounts[SECRET_MOUNT]["readOnly"] is True
        assert volumes[mounts[SECRET_MOUNT]["name"]]["secret"]["secretName"] == "wiseflow-sync"
        files = {e["name"]: e["value"] for e in container["env"] if e["name"].endswith("_FILE")}
        # The service also authenticates to the SIS; the webhooks Job calls only WISEflow.
        wanted = SERVICE_SECRET_FILES if workload["kind"] == "Deployment" else JOB_SECRET_FILES
        assert set(files) == wanted
        assert all(path.startswith(SECRET_MOUNT + "/") for path in files.values())
        projected = volumes[mounts[SECRET_MOUNT]["name"]]["secret"].get("items")
        if projected is not None:  # the Job mounts only the keys it reads
            keys = {item["path"] for item in projected}
            assert keys == {path.removeprefix(SECRET_MOUNT + "/") for path in files.values()}


@pytest.mark.parametrize(
    ("name", "api_url"), [("staging", STAGING_API_URL), ("production", PRODUCTION_API_URL)]
)
def test_overlay_settings_load_and_agree_with_the_ingress_and_probes(
    docs: dict[str, list[Doc]], name: str, api_url: str, tmp_path: Path
) -> None:
    """The overlay's ConfigMap and secret files pass load_settings; URL, host, TLS and probes agree."""
    resources = docs[name]
    deployment = _find(resources, "Deployment", "wiseflow-sync")
    (container,) = _pod(deployment)["containers"]
    env = dict(_find(resources, "ConfigMap", "wiseflow-sync")["data"])
    # The secret files as the kubelet would lay them out, under a temporary directory.
    example = yaml.safe_load((ROOT / "k8s" / "base" / "secret.example.yaml").read_text())["stringData"]
    for variable in (e for e in container["env"] if e["name"].endswith("_FILE")):
        key = variable["value"].removeprefix(SECRET_MOUNT + "/")
        (tmp_path / key).write_text(example[key] + "\n")
        env[variable["name"]] = str(tmp_path / key)
    settings = load_settings(env)
    assert settings.api_url == api_url
    assert settings.uses_oauth
    assert settings.webhook_secrets
    settings.require_sink_authentication()  # what `run` checks: the SIS gets our token
    assert settings.public_webhook_url is not None
    public = urlsplit(settings.public_webhook_url)
    ingress = _find(resources, "Ingress", "wiseflow-sync")["spec"]
    (rule,) = ingress["rules"]
    assert (public.scheme, public.hostname) == ("https", rule["host"])
    assert [p["path"] for p in rule["http"]["paths"]] == [public.path] == ["/webhooks/wiseflow"]
    assert rule["host"] in ingress["tls"][0]["hosts"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in (("startupProbe", "/livez"), ("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"]["path"] == path
        assert ports[container[probe]["httpGet"]["port"]] == settings.http_port == 8080


def test_overlays_differ_where_they_should(docs: dict[str, list[Doc]]) -> None:
    """Each overlay has its own namespace and host; production gets more memory and a larger volume."""
    namespaces = {n: _find(docs[n], "Deployment", "wiseflow-sync")["metadata"]["namespace"] for n in OVERLAYS}
    hosts = {n: _find(docs[n], "Ingress", "wiseflow-sync")["spec"]["rules"][0]["host"] for n in OVERLAYS}
    assert len(set(namespaces.values())) == len(set(hosts.values())) == len(OVERLAYS)
    for name in OVERLAYS:
        assert ("Namespace", namespaces[name]) in {(d["kind"], d["metadata"]["name"]) for d in docs[name]}

    def size(name: str) -> tuple[str, str]:
        (container,) = _pod(_find(docs[name], "Deployment", "wiseflow-sync"))["containers"]
        claim = _find(docs[name], "PersistentVolumeClaim", "wiseflow-sync-data")
        return container["resources"]["limits"]["memory"], claim["spec"]["resources"]["requests"]["storage"]

    assert size("staging") == ("256Mi", "1Gi")
    assert size("production") == ("512Mi", "10Gi")


@pytest.mark.parametrize("name", [*OVERLAYS, "base"])
def test_webhooks_ensure_job_runs_beside_not_behind_the_service(docs: dict[str, list[Doc]], name: str) -> None:
    """The Job runs `webhooks ensure` with the service's config; the Service never routes to its pod."""
    job = _find(docs[name], "Job", "wiseflow-sync-webhooks")
    pod = _pod(job)
    (container,) = pod["containers"]
    assert container["args"] == ["webhooks", "ensure"]
    assert {"configMapRef": {"name": "wiseflow-sync"}} in container["envFrom"]
    assert "persistentVolumeClaim" not in str(pod["volumes"])  # the RWO volume stays the service's alone
    labels = job["spec"]["template"]["metadata"]["labels"]
    selector = _find(docs[name], "Service", "wiseflow-sync")["spec"]["selector"]
    assert not selector.items() <= labels.items()
    policy = _find(docs[name], "NetworkPolicy", "wiseflow-sync-webhooks")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert "ingress" not in policy
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}


def test_servicemonitor_scrapes_the_service_metrics(docs: dict[str, list[Doc]]) -> None:
    """The ServiceMonitor selects the wiseflow-sync Service (any namespace) by its port name, on /metrics."""
    monitor = _find(docs["otel"], "ServiceMonitor", "wiseflow-sync")["spec"]
    assert monitor["namespaceSelector"] == {"any": True}
    for name in OVERLAYS:
        service = _find(docs[name], "Service", "wiseflow-sync")
        assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        (endpoint,) = monitor["endpoints"]
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"


def test_collector_and_jaeger_are_where_the_service_sends_spans(docs: dict[str, list[Doc]]) -> None:
    """The service's OTLP endpoint is the collector Service; the collector's exporter is the Jaeger Service."""
    otel = docs["otel"]
    endpoint = urlsplit(
        _find(docs["production"], "ConfigMap", "wiseflow-sync")["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    )
    collector = _find(otel, "Service", "otel-collector")
    assert endpoint.hostname == f"otel-collector.{collector['metadata']['namespace']}.svc"
    assert endpoint.port in {p["port"] for p in collector["spec"]["ports"]}
    (config_map,) = [
        d for d in otel if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("otel-collector")
    ]
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    assert config == yaml.safe_load((ROOT / "otel" / "k8s" / "collector-config.yaml").read_text())
    pipeline = config["service"]["pipelines"]["traces"]
    assert pipeline["processors"][0] == "memory_limiter"
    assert "batch" in pipeline["processors"]
    host, port = config["exporters"][pipeline["exporters"][0]]["endpoint"].split(":")
    jaeger = _find(otel, "Service", host)
    assert int(port) in {p["port"] for p in jaeger["spec"]["ports"]}
    assert 16686 in {p["port"] for p in jaeger["spec"]["ports"]}


def test_collector_takes_spans_from_every_overlay_namespace_only(docs: dict[str, list[Doc]]) -> None:
    """The rendered collector policy admits exactly the namespaces the overlays deploy the service into."""
    (rule,) = _find(docs["otel"], "NetworkPolicy", "otel-collector")["spec"]["ingress"]
    (peer,) = rule["from"]
    (expression,) = peer["namespaceSelector"]["matchExpressions"]
    deployed = {_find(docs[n], "Deployment", "wiseflow-sync")["metadata"]["namespace"] for n in OVERLAYS}
    assert set(expression["values"]) == deployed
    names = {"wiseflow-sync", "wiseflow-sync-webhooks"}
    assert set(peer["podSelector"]["matchExpressions"][0]["values"]) == names


@pytest.mark.parametrize("name", OVERLAYS)
def test_rendered_https_egress_keeps_its_exceptions(docs: dict[str, list[Doc]], name: str) -> None:
    """Kustomize keeps every except list: both policies exclude 10/8 and the metadata address."""
    for policy_name in ("wiseflow-sync", "wiseflow-sync-webhooks"):
        spec = _find(docs[name], "NetworkPolicy", policy_name)["spec"]
        blocks = [p["ipBlock"] for rule in spec["egress"] for p in rule.get("to", []) if "ipBlock" in p]
        v4 = next(b for b in blocks if b["cidr"] == "0.0.0.0/0")
        assert {"10.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16"} <= set(v4["except"])
        v6 = next(b for b in blocks if b["cidr"] == "::/0")
        assert {"fc00::/7", "fe80::/10", "::ffff:0:0/96"} <= set(v6["except"])


@pytest.mark.parametrize("name", [*OVERLAYS, "base"])
def test_the_grafana_dashboard_is_a_labelled_configmap(docs: dict[str, list[Doc]], name: str) -> None:
    """The dashboard sidecar's label, one JSON file equal to k8s/base/grafana-dashboard.json, a stable name."""
    config_map = _find(docs[name], "ConfigMap", "wiseflow-sync-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    (key,) = config_map["data"]
    dashboard = json.loads((ROOT / "k8s" / "base" / "grafana-dashboard.json").read_text())
    assert (key, json.loads(config_map["data"][key])) == ("wiseflow-sync.json", dashboard)


def _runbook_urls(rendered_text: str) -> tuple[str, list[str]]:
    """The rendered PrometheusRule's runbook base annotation and every alert's runbook_url."""
    docs = [d for d in yaml.safe_load_all(rendered_text) if d]
    rule = _find(docs, "PrometheusRule", "wiseflow-sync")
    urls = [r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"]]
    return rule["metadata"]["annotations"]["wiseflow-sync/runbook-base"], urls


def test_runbook_urls_follow_the_one_base_annotation(rendered: dict[str, Path], tmp_path: Path) -> None:
    """Changing the PrometheusRule's runbook-base annotation alone moves every alert's runbook_url with it."""
    base, urls = _runbook_urls(rendered["base"].read_text())
    assert urls
    assert all(url.startswith(base + "#") for url in urls)
    copy = tmp_path / "base"
    shutil.copytree(ROOT / "k8s" / "base", copy)
    ours = "https://wiki.example.org/ops/wiseflow-sync-runbook"
    manifest = copy / "prometheusrule.yaml"
    manifest.write_text(
        manifest.read_text().replace(
            f"wiseflow-sync/runbook-base: {base}", f"wiseflow-sync/runbook-base: {ours}"
        )
    )
    result = subprocess.run(  # noqa: S603 - fixed arguments, our own files
        [_tool("kubectl"), "kustomize", str(copy)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    moved_base, moved = _runbook_urls(result.stdout)
    assert moved_base == ours
    assert moved == [url.replace(base, ours) for url in urls]
