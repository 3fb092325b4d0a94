"""Deployment artefacts keep the contract: the k8s base, the Dockerfile, its lock and the collector config.

The rendered overlays and the validators (kubectl kustomize, kubernetes-validate, checkov) are checked in
tests/integration/test_deploy_validation.py.
"""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.adapters.readiness import READY_TIMEOUT
from service.errors import ConfigError
from service.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s" / "base"
# Secrets are files of the Secret, read through the *_FILE variables; the rest is in the ConfigMap.
SECRET_FILES = {
    "WISEFLOW_CLIENT_SECRET_FILE": "/var/run/secrets/wiseflow/client-secret",
    "WISEFLOW_WEBHOOK_SECRET_FILE": "/var/run/secrets/wiseflow/webhook-secret",
    "SYNC_SINK_TOKEN_FILE": "/var/run/secrets/wiseflow/sink-token",
}
# Addresses egress must never reach: private, carrier-grade NAT, link-local (with the cloud metadata service in
# both families), unique local IPv6, and IPv4 spelled as IPv4-mapped IPv6.
FORBIDDEN_DESTINATIONS = (
    "10.0.0.1",
    "10.96.0.1",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "127.0.0.1",
    "fd00:ec2::254",
    "fe80::1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
)
# Public addresses (WISEflow's API is on the internet) that the HTTPS rule must still allow.
PUBLIC_DESTINATIONS = ("1.1.1.1", "20.50.2.10", "52.1.2.3", "2606:4700::1111")
DESIGN_SETTINGS = frozenset(
    {
        "WISEFLOW_API_URL",
        "WISEFLOW_CLIENT_ID",
        "WISEFLOW_CLIENT_NAME",
        "WISEFLOW_WEBHOOK_SCHEME",
        "WISEFLOW_WEBHOOK_SIGNATURE_HEADER",
        "WISEFLOW_WEBHOOK_TOLERANCE",
        "SYNC_DATABASE",
        "SYNC_HTTP_PORT",
        "SYNC_POLL_INTERVAL",
        "SYNC_RATE_PER_SECOND",
        "SYNC_RATE_PER_MINUTE",
        "SYNC_MAX_WAIT",
        "SYNC_SINK_URL",
        "SYNC_PUBLIC_WEBHOOK_URL",
        "SYNC_MIN_FREE_BYTES",
        "SYNC_RETAIN_DAYS",
        "LOG_LEVEL",
        "OTEL_SERVICE_NAME",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_TRACES_SAMPLER",
    }
)
UID = 10001
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"


def _documents() -> dict[tuple[str, str], dict[str, Any]]:
    """Every document of every k8s/*.yaml, by (kind, name)."""
    docs: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None and doc.get("kind") != "Kustomization":
                docs[(doc["kind"], doc["metadata"]["name"])] = doc
    return docs


@pytest.fixture(scope="module")
def docs() -> dict[tuple[str, str], dict[str, Any]]:
    """The parsed manifests."""
    return _documents()


@pytest.fixture(scope="module")
def pod(docs: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """The Deployment's pod spec."""
    spec: dict[str, Any] = docs[("Deployment", "wiseflow-sync")]["spec"]["template"]["spec"]
    return spec


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    """The base applies every manifest file except secret.example.yaml, which must never be applied."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(kustomization["resources"]) == manifests
    assert (K8S / "secret.example.yaml").exists()


def test_single_writer_deployment(docs: dict[tuple[str, str], dict[str, Any]]) -> None:
    """One replica, replaced with Recreate: two pods must never write the SQLite file at once."""
    spec = docs[("Deployment", "wiseflow-sync")]["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


def test_pod_is_hardened(pod: dict[str, Any]) -> None:
    """Non-root uid 10001, read-only root, no escalation, no capabilities, RuntimeDefault seccomp."""
    (container,) = pod["containers"]
    pod_ctx, ctx = pod["securityContext"], container["securityContext"]
    assert (pod_ctx["runAsNonRoot"], pod_ctx["runAsUser"]) == (True, UID)
    assert pod_ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert (ctx["runAsNonRoot"], ctx["runAsUser"]) == (True, UID)
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False


def test_probes_and_graceful_shutdown(pod: dict[str, Any]) -> None:
    """Liveness and startup on /livez, readiness on /readyz, 30 s to drain after SIGTERM."""
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["startupProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # The readiness check bounds its own wait for the database under the probe's timeout.
    assert container["readinessProbe"]["timeoutSeconds"] > READY_TIMEOUT
    assert pod["terminationGracePeriodSeconds"] == 30
    assert {"requests", "limits"} <= set(container["resources"])


def test_writable_paths_are_volumes(docs: dict[tuple[str, str], dict[str, Any]], pod: dict[str, Any]) -> None:
    """/data is the PVC and /tmp an emptyDir: the only writable paths on a read-only root."""
    (container,) = pod["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = volumes[mounts["/data"]]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in docs
    assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108 - a mount path, not a temp file


def test_configmap_holds_exactly_the_design_settings(docs: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Every ConfigMap key is a non-secret setting of docs/configuration.md, and every such setting is there."""
    data = docs[("ConfigMap", "wiseflow-sync")]["data"]
    assert set(data) == DESIGN_SETTINGS
    assert all(isinstance(v, str) for v in data.values())


def test_secrets_reach_the_pod_as_files_only(docs: dict[tuple[str, str], dict[str, Any]]) -> None:
    """The pod's environment comes from the ConfigMap; each secret is a file of the mounted Secret."""
    secret = docs[("Secret", "wiseflow-sync")]
    (container,) = docs[("Deployment", "wiseflow-sync")]["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"configMapRef": {"name": "wiseflow-sync"}}]
    files = {e["name"]: e["value"] for e in container["env"]}
    assert files == SECRET_FILES
    assert {Path(path).name for path in files.values()} == set(secret["stringData"])


def test_configmap_values_load_and_match_the_pod(
    docs: dict[tuple[str, str], dict[str, Any]], pod: dict[str, Any], tmp_path: Path
) -> None:
    """The shipped values and secret files pass load_settings; the port and database fit the pod."""
    env = dict(docs[("ConfigMap", "wiseflow-sync")]["data"])
    for variable, path in SECRET_FILES.items():
        key = Path(path).name
        (tmp_path / key).write_text(docs[("Secret", "wiseflow-sync")]["stringData"][key] + "\n")
        env[variable] = str(tmp_path / key)
    settings = load_settings(env)
    (container,) = pod["containers"]
    assert settings.http_port == container["ports"][0]["containerPort"]
    assert settings.database.startswith("/data/")
    assert settings.webhook_secrets
    assert settings.client_secret is not None
    assert settings.sink_token is not None
    settings.require_sink_authentication()


def test_the_shipped_sink_is_refused_without_its_token(docs: dict[tuple[str, str], dict[str, Any]]) -> None:
    """The ConfigMap's SIS is remote: without the sink-token file `run` would refuse to start."""
    env = dict(docs[("ConfigMap", "wiseflow-sync")]["data"])
    env.pop("WISEFLOW_CLIENT_ID")  # its secret is a file too; the sink is what this test is about
    with pytest.raises(ConfigError) as info:
        load_settings(env).require_sink_authentication()
    assert "SYNC_SINK_TOKEN" in str(info.value)


def test_ingress_exposes_only_the_webhook_over_tls(docs: dict[tuple[str, str], dict[str, Any]]) -> None:
    """The only public path is /webhooks/wiseflow, with TLS, routed to the Service's http port."""
    ingress = docs[("Ingress", "wiseflow-sync")]["spec"]
    assert ingress["tls"][0]["secretName"]
    paths = [p for rule in ingress["rules"] for p in rule["http"]["paths"]]
    assert [(p["path"], p["pathType"]) for p in paths] == [("/webhooks/wiseflow", "Exact")]
    backend = paths[0]["backend"]["service"]
    service = docs[("Service", backend["name"])]["spec"]
    assert backend["port"]["name"] in {p["name"] for p in service["ports"]}


def test_network_policy_ports(docs: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Ingress only to 8080; egress only DNS, HTTPS (WISEflow, SIS) and OTLP/HTTP to the collector."""
    spec = docs[("NetworkPolicy", "wiseflow-sync")]["spec"]
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    ingress_ports = {p["port"] for rule in spec["ingress"] for p in rule["ports"]}
    egress_ports = {p["port"] for rule in spec["egress"] for p in rule["ports"]}
    assert ingress_ports == {8080}
    assert egress_ports == {53, 443, 4318}


def egress_allows(policy: dict[str, Any], address: str, port: int) -> bool:
    """True when an ipBlock egress rule of `policy` lets the pod reach `address:port` (CIDR minus except)."""
    ip = ipaddress.ip_address(address)
    for rule in policy["spec"]["egress"]:
        if port not in {p["port"] for p in rule.get("ports", [])}:
            continue
        for peer in rule.get("to", []):
            block = peer.get("ipBlock")
            if block is None or ip.version != ipaddress.ip_network(block["cidr"]).version:
                continue
            excluded = any(ip in ipaddress.ip_network(c) for c in block.get("except", []))
            if ip in ipaddress.ip_network(block["cidr"]) and not excluded:
                return True
    return False


@pytest.mark.parametrize("name", ["wiseflow-sync", "wiseflow-sync-webhooks"])
def test_https_egress_excludes_private_link_local_and_metadata_ranges(
    docs: dict[tuple[str, str], dict[str, Any]], name: str
) -> None:
    """HTTPS reaches the internet, never the cluster, private networks or the metadata service."""
    policy = docs[("NetworkPolicy", name)]
    assert [a for a in FORBIDDEN_DESTINATIONS if egress_allows(policy, a, 443)] == []
    assert [a for a in PUBLIC_DESTINATIONS if not egress_allows(policy, a, 443)] == []
    assert not egress_allows(policy, "1.1.1.1", 80)


def _overlay_namespaces() -> set[str]:
    """The namespace each overlay of k8s/ deploys the service into."""
    overlays = (ROOT / "k8s" / "overlays").iterdir()
    return {yaml.safe_load((o / "kustomization.yaml").read_text())["namespace"] for o in overlays}


def test_the_collector_accepts_spans_only_from_the_service_namespaces() -> None:
    """The collector's one ingress rule names the overlays' namespaces: no other namespace sends spans."""
    path = ROOT / "otel" / "k8s" / "networkpolicy.yaml"
    policies = {d["metadata"]["name"]: d for d in yaml.safe_load_all(path.read_text()) if d}
    (rule,) = policies["otel-collector"]["spec"]["ingress"]
    (peer,) = rule["from"]
    (expression,) = peer["namespaceSelector"]["matchExpressions"]
    assert (expression["key"], expression["operator"]) == ("kubernetes.io/metadata.name", "In")
    assert set(expression["values"]) == _overlay_namespaces()
    assert {p["port"] for p in rule["ports"]} == {4318}


def test_dockerfile_matches_the_pod() -> None:
    """The image runs as the uid the pod demands, exposes the probed port and starts `wiseflow-sync run`."""
    # Later instructions win, so the values are the runtime stage's.
    found = re.findall(r"(?m)^(USER|EXPOSE|ENTRYPOINT|CMD)\s+(.+)$", DOCKERFILE.read_text())
    instructions = dict(found)
    assert instructions["USER"].split(":")[0] == str(UID)
    assert instructions["EXPOSE"] == "8080"
    assert json.loads(instructions["ENTRYPOINT"]) == ["wiseflow-sync"]
    assert json.loads(instructions["CMD"]) == ["run"]


def test_collector_pipeline_sends_otlp_http_to_jaeger() -> None:
    """The collector takes OTLP/HTTP on 4318 and sends traces to jaeger:4317 through defined components."""
    config = yaml.safe_load((ROOT / "otel" / "k8s" / "collector-config.yaml").read_text())
    pipeline = config["service"]["pipelines"]["traces"]
    for section in ("receivers", "processors", "exporters"):
        assert set(pipeline[section]) <= set(config[section])
    assert "batch" in pipeline["processors"]
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    exporter = config["exporters"][pipeline["exporters"][0]]
    assert exporter["endpoint"] == "jaeger:4317"
    compose = yaml.safe_load((ROOT / "otel" / "docker-compose.yaml").read_text())
    assert "16686:16686" in compose["services"]["jaeger"]["ports"]


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (continuation lines joined), as (INSTRUCTION, arguments)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_dockerfile_base_images_are_pinned_by_digest() -> None:
    """Every FROM names its base by sha256 digest, so a rebuild cannot pick up a different base."""
    bases = [args.split()[0] for op, args in _instructions() if op == "FROM"]
    assert bases
    for base in bases:
        assert re.fullmatch(r"[\w./-]+(:[\w.-]+)?@sha256:[0-9a-f]{64}", base), base


def test_dockerfile_installs_only_hashed_locked_dependencies() -> None:
    """pip installs the lock in hash-checking mode, then the project with no resolution and no index."""
    installs = [args for op, args in _instructions() if op == "RUN" and "pip install" in args]
    commands = [c.strip() for args in installs for c in args.split("&&") if "pip install" in c]
    assert commands == [
        "/opt/venv/bin/pip install --require-hashes --no-deps -r requirements.lock",
        "/opt/venv/bin/pip install --no-deps --no-build-isolation --no-index .",
    ]
    copied = [args for op, args in _instructions() if op == "COPY" and "--from" not in args]
    assert "requirements.lock ./" in copied


def test_image_holds_no_tests_and_refuses_the_simulator() -> None:
    """Only the package goes in (no tests, benchmarks or fixtures), and the runtime stage marks the image."""
    copied = " ".join(args for op, args in _instructions() if op == "COPY")
    assert not re.search(r"\b(tests|bench)\b", copied)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"tests", "bench", "*.sqlite3"} <= set(ignored)
    runtime = DOCKERFILE.read_text().rsplit("FROM ", 1)[1]
    assert re.search(r"(?m)^\s+WISEFLOW_SYNC_IMAGE=1\b", runtime)


def _normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(spec: str) -> str:
    """The distribution name of a requirement string such as "aiohttp>=3.10" or "x[extra]>=1"."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    assert match, spec
    return _normalize(match.group(1))


def _locked() -> dict[str, str]:
    """The lock's pins: name -> the whole requirement block (pin and hashes)."""
    blocks = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text())
    pins = {}
    for block in blocks:
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==\S+", block)
        if match:
            pins[_normalize(match.group(1))] = block
    return pins


def test_lock_is_in_sync_with_pyproject() -> None:
    """Every runtime dependency and build requirement is pinned in the lock, with hashes; no dev tool is."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    locked = _locked()
    wanted = {_requirement_name(d) for d in project["project"]["dependencies"]}
    wanted |= {_requirement_name(d) for d in project["build-system"]["requires"]}
    assert wanted <= set(locked), f"run `make lock`: {sorted(wanted - set(locked))} missing"
    # A dev tool may be in the lock only because a runtime dependency needs it too ("# via" a locked one).
    dev = {_requirement_name(d) for d in project["project"]["optional-dependencies"]["dev"]}
    for name in dev & set(locked):
        via = re.findall(r"#\s+(?:via\s+)?([A-Za-z0-9][A-Za-z0-9._-]*)\s*$", locked[name], re.MULTILINE)
        assert {_normalize(v) for v in via} & set(locked), f"dev tool {name} in the image's lock"
    for name, block in locked.items():
        assert "--hash=sha256:" in block, f"{name} has no hash"
