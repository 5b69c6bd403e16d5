"""The deployment files agree with each other and with the code.

No Docker engine, Kubernetes cluster or Grafana here: every check parses the files
(docker-compose.yml, deploy/**) and compares them with the repository (paths that must
exist, storage/keys.py, the Procfile, pyproject.toml) and with the metric catalogue the
service exports.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from storage.keys import Keys
from tests.dashboard_queries import (
    DASHBOARD_PATH,
    dashboard_expressions,
    iter_panels,
    load_dashboard,
    promql_metric_names,
)

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_PATH = REPO / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
PROMETHEUS_PATH = DEPLOY / "prometheus" / "prometheus.yml"
GRAFANA_PROVISIONING = DEPLOY / "grafana" / "provisioning"
DATASOURCE_PATH = GRAFANA_PROVISIONING / "datasources" / "prometheus.yaml"
DASHBOARD_PROVIDERS_PATH = GRAFANA_PROVISIONING / "dashboards" / "dashboards.yaml"
K8S = DEPLOY / "k8s"

DASHBOARD_UID = "signup-service"
DATASOURCE_UID = "prometheus"

WEB_METRICS = {
    "http_requests_total": "counter",
    "http_request_duration_seconds": "histogram",
    "http_requests_in_flight": "gauge",
    "signups_total": "counter",
    "idempotency_requests_total": "counter",
    "reply_wait_seconds": "histogram",
    "reply_timeouts_total": "counter",
    "commands_enqueued_total": "counter",
}
WORKER_METRICS = {
    "commands_processed_total": "counter",
    "command_processing_seconds": "histogram",
    "command_queue_wait_seconds": "histogram",
    "commands_in_progress": "gauge",
    "command_redeliveries_total": "counter",
    "commands_reclaimed_total": "counter",
    "dead_letters_total": "counter",
    "last_command_processed_timestamp_seconds": "gauge",
    "stream_length": "gauge",
    "stream_group_lag": "gauge",
    "stream_group_pending": "gauge",
    "dependency_errors_total": "counter",
}
PROCESS_METRICS = {
    "process_cpu_seconds_total": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_open_fds": "gauge",
    "process_start_time_seconds": "gauge",
}


def _series_names(metrics: dict[str, str]) -> frozenset[str]:
    names: set[str] = set()
    for name, kind in metrics.items():
        if kind == "histogram":
            names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(name)
    return frozenset(names)


# Every series name the service exports (histograms expanded): the dashboard reads no other.
METRIC_CATALOGUE = _series_names(WEB_METRICS | WORKER_METRICS | PROCESS_METRICS)

# What the dashboard must show at least (the panels the deployment was asked for).
REQUIRED_DASHBOARD_METRICS = frozenset(
    {
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "signups_total",
        "idempotency_requests_total",
        "reply_timeouts_total",
        "stream_group_lag",
        "stream_group_pending",
        "command_queue_wait_seconds_bucket",
        "command_processing_seconds_bucket",
        "dead_letters_total",
        "commands_processed_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    }
)

APP_ENV = {
    "DATABASE_URL": "postgresql://signup:signup@postgres:5432/signup",
    "REDIS_URL": "redis://redis:6379/0",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318",
    "LOG_JSON": "true",
}
WEB_CMD = [
    "uvicorn",
    "--factory",
    "api.app:create_app",
    "--host",
    "0.0.0.0",  # noqa: S104 - inside the container, behind its network
    "--port",
    "8000",
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--no-access-log",
    "--timeout-graceful-shutdown",
    "25",
]


# --- helpers ---------------------------------------------------------------------------


def as_dict(value: object, what: str) -> dict[str, Any]:
    assert isinstance(value, dict), f"{what}: expected a mapping, got {value!r}"
    return value


def as_list(value: object, what: str) -> list[Any]:
    assert isinstance(value, list), f"{what}: expected a list, got {value!r}"
    return value


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    assert docs, f"{path}: no YAML document"
    return [as_dict(d, str(path)) for d in docs]


def load_yaml(path: Path) -> dict[str, Any]:
    docs = load_yaml_documents(path)
    assert len(docs) == 1, f"{path}: expected one YAML document"
    return docs[0]


def deploy_yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_PATH)


def compose_services() -> dict[str, dict[str, Any]]:
    services = as_dict(compose().get("services"), "services")
    return {name: as_dict(svc, name) for name, svc in services.items()}


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        pairs = (str(item).partition("=") for item in env)
        return {key: value for key, _, value in pairs}
    return {str(k): str(v) for k, v in as_dict(env, "environment").items()}


def command_argv(value: object) -> list[str]:
    if isinstance(value, str):
        return shlex.split(value)
    return [str(part) for part in as_list(value, "command")]


@dataclass(frozen=True)
class Mount:
    service: str
    source: str
    target: str


def bind_mounts() -> list[Mount]:
    """Bind mounts (host path → container path) of every compose service."""
    mounts: list[Mount] = []
    for name, service in compose_services().items():
        for volume in service.get("volumes", []):
            if isinstance(volume, str):
                source, _, rest = volume.partition(":")
                target = rest.split(":")[0]
            else:
                spec = as_dict(volume, f"{name} volume")
                source, target = str(spec.get("source", "")), str(spec["target"])
            if source.startswith((".", "/")):
                mounts.append(Mount(name, source, target))
    return mounts


def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in sorted(K8S.glob("*.yaml")) for doc in load_yaml_documents(path)]


def k8s_objects(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_documents() if doc.get("kind") == kind]


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in k8s_objects(kind) if as_dict(d.get("metadata"), kind).get("name") == name]
    assert len(found) == 1, f"expected one {kind} named {name}, found {len(found)}"
    return found[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    template = as_dict(as_dict(workload.get("spec"), "spec").get("template"), "template")
    return as_dict(template.get("spec"), "template.spec")


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    items = as_list(pod_spec(workload).get("containers"), "containers")
    return [as_dict(c, "container") for c in items]


def container_env(container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in container.get("env", []):
        entry = as_dict(item, "env")
        env[str(entry["name"])] = str(entry.get("value", ""))
    return env


def procfile() -> dict[str, list[str]]:
    lines = (REPO / "Procfile").read_text(encoding="utf-8").splitlines()
    entries = (line.partition(":") for line in lines if line.strip() and not line.startswith("#"))
    return {name.strip(): shlex.split(command) for name, _, command in entries}


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def dockerfile_instructions() -> list[Instruction]:
    """Instructions of the Dockerfile, continuation lines joined, comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


@dataclass(frozen=True)
class Stage:
    base: str
    name: str
    instructions: list[Instruction]


def dockerfile_stages() -> list[Stage]:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in dockerfile_instructions():
        if instruction.keyword == "ARG" and not stages:
            key, _, default = instruction.arguments.partition("=")
            args[key] = default
        elif instruction.keyword == "FROM":
            words = instruction.arguments.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(base, name, []))
        else:
            assert stages, f"{instruction.keyword} before the first FROM"
            stages[-1].instructions.append(instruction)
    return stages


def copy_sources(stage: Stage) -> list[str]:
    """Sources of the stage's COPY instructions that come from the build context."""
    sources: list[str] = []
    for instruction in stage.instructions:
        if instruction.keyword != "COPY":
            continue
        words = instruction.arguments.split()
        if any(w.startswith("--from=") for w in words):
            continue
        paths = [w for w in words if not w.startswith("--")]
        assert len(paths) >= 2, f"COPY needs a source and a destination: {instruction}"
        sources.extend(paths[:-1])
    return sources


def exec_form(instruction: Instruction, keyword: str) -> list[str]:
    arguments = instruction.arguments
    if keyword == "HEALTHCHECK":
        arguments = arguments[arguments.index("CMD") + len("CMD") :].strip()
    argv = json.loads(arguments)
    return [str(a) for a in as_list(argv, keyword)]


def last_instruction(stage: Stage, keyword: str) -> Instruction:
    found = [i for i in stage.instructions if i.keyword == keyword]
    assert found, f"no {keyword} in stage {stage.name or stage.base}"
    return found[-1]


# --- every file parses ------------------------------------------------------------------


def test_compose_and_every_deploy_yaml_parse() -> None:
    files = [COMPOSE_PATH, *deploy_yaml_files()]
    assert len(files) >= 9
    for path in files:
        for doc in load_yaml_documents(path):
            assert doc, f"{path}: empty document"


def test_dashboard_json_parses_with_a_fixed_uid() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == DASHBOARD_UID
    assert dashboard.get("id") is None, "a provisioned dashboard carries no database id"
    assert dashboard["title"]
    panel_ids = [panel["id"] for panel in iter_panels(dashboard)]
    assert len(panel_ids) == len(set(panel_ids)), "panel ids repeat"
    for panel in iter_panels(dashboard):
        assert panel["type"] in {"row", "timeseries", "stat"}, panel["title"]
        assert {"h", "w", "x", "y"} <= set(as_dict(panel.get("gridPos"), "gridPos"))


# --- docker compose ---------------------------------------------------------------------


def test_compose_has_every_service() -> None:
    assert set(compose_services()) == {
        "postgres",
        "redis",
        "migrate",
        "web",
        "worker",
        "jaeger",
        "prometheus",
        "grafana",
    }


def test_compose_build_points_at_the_dockerfile() -> None:
    built = {name: svc for name, svc in compose_services().items() if "build" in svc}
    assert set(built) == {"migrate", "web", "worker"}
    images = {svc.get("image") for svc in built.values()}
    assert len(images) == 1, "web, worker and migrate run one image"
    for name, service in built.items():
        build = as_dict(service["build"], f"{name}.build")
        assert build["context"] == "."
        assert (REPO / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        assert DOCKERFILE.is_file()


def test_compose_shares_app_config_through_an_extension_field() -> None:
    data = compose()
    assert "x-app" in data
    text = COMPOSE_PATH.read_text(encoding="utf-8")
    assert re.search(r"^x-app:\s*&app\b", text, re.MULTILINE)
    for name in ("migrate", "web", "worker"):
        env = service_environment(compose_services()[name])
        for key, value in APP_ENV.items():
            assert env.get(key) == value, f"{name}: {key}"


def test_compose_bind_mounts_exist() -> None:
    mounts = bind_mounts()
    assert mounts
    for mount in mounts:
        assert (REPO / mount.source).exists(), f"{mount.service}: {mount.source} is missing"


def test_compose_named_volumes_are_declared() -> None:
    declared = set(as_dict(compose().get("volumes", {}), "volumes"))
    for name, service in compose_services().items():
        for volume in service.get("volumes", []):
            source = str(volume).partition(":")[0] if isinstance(volume, str) else ""
            if source and not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"


def test_compose_start_order_and_healthchecks() -> None:
    services = compose_services()
    for name in ("postgres", "redis", "web", "worker"):
        assert "test" in as_dict(services[name].get("healthcheck"), f"{name}.healthcheck")

    def conditions(name: str) -> dict[str, str]:
        deps = as_dict(services[name].get("depends_on"), f"{name}.depends_on")
        return {dep: as_dict(spec, dep)["condition"] for dep, spec in deps.items()}

    assert conditions("migrate") == {"postgres": "service_healthy"}
    for name in ("web", "worker"):
        deps = conditions(name)
        assert deps["migrate"] == "service_completed_successfully", name
        assert deps["redis"] == "service_healthy", name
    assert services["migrate"]["restart"] == "no", "a one-shot must not be restarted"


def test_compose_processes_match_the_procfile() -> None:
    services = compose_services()
    proc = procfile()
    assert command_argv(services["migrate"]["command"]) == proc["release"]
    assert command_argv(services["worker"]["command"]) == proc["worker"]
    assert proc["web"][:3] == WEB_CMD[:3], "web runs the same app factory"


def test_compose_worker_replicas_serve_metrics_on_their_port() -> None:
    worker = compose_services()["worker"]
    assert as_dict(worker.get("deploy"), "worker.deploy")["replicas"] == 2
    env = service_environment(worker)
    assert env["PORT"] == "9100"
    assert "ports" not in worker, "a published port would stop `--scale worker=N`"
    assert "container_name" not in worker


def test_compose_redis_persists_and_never_evicts() -> None:
    redis = compose_services()["redis"]
    assert str(redis["image"]).startswith("redis:7.0")
    argv = command_argv(redis["command"])
    assert argv[0] == "redis-server"
    options = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert options == {
        "--appendonly": "yes",
        "--appendfsync": "everysec",
        "--maxmemory-policy": "noeviction",
    }


def test_compose_published_ports() -> None:
    services = compose_services()
    published = {name: {str(p) for p in svc.get("ports", [])} for name, svc in services.items()}
    assert published["web"] == {"8000:8000"}
    assert published["prometheus"] == {"9090:9090"}
    assert published["grafana"] == {"3000:3000"}
    assert {"16686:16686", "4317:4317", "4318:4318"} <= published["jaeger"]
    assert service_environment(services["jaeger"])["COLLECTOR_OTLP_ENABLED"] == "true"


# --- Prometheus -------------------------------------------------------------------------


def scrape_configs() -> dict[str, dict[str, Any]]:
    config = load_yaml(PROMETHEUS_PATH)
    jobs = as_list(config.get("scrape_configs"), "scrape_configs")
    return {str(as_dict(j, "job")["job_name"]): as_dict(j, "job") for j in jobs}


def test_prometheus_scrapes_every_5s() -> None:
    config = load_yaml(PROMETHEUS_PATH)
    assert as_dict(config.get("global"), "global")["scrape_interval"] == "5s"


def test_prometheus_targets_web_and_every_worker() -> None:
    jobs = scrape_configs()
    web = jobs["web"]
    targets = [
        t for sc in web["static_configs"] for t in as_list(as_dict(sc, "sc")["targets"], "t")
    ]
    assert targets == ["web:8000"]
    assert web.get("metrics_path", "/metrics") == "/metrics"

    worker = jobs["worker"]
    assert worker.get("metrics_path", "/metrics") == "/metrics"
    (dns,) = as_list(worker.get("dns_sd_configs"), "dns_sd_configs")
    dns = as_dict(dns, "dns_sd_config")
    assert dns["type"] == "A"
    assert dns["names"] == ["worker"]
    worker_port = service_environment(compose_services()["worker"])["PORT"]
    assert str(dns["port"]) == worker_port


def test_prometheus_config_is_mounted_where_the_image_reads_it() -> None:
    mounts = {(m.service, m.target): m.source for m in bind_mounts()}
    source = mounts[("prometheus", "/etc/prometheus/prometheus.yml")]
    assert (REPO / source).resolve() == PROMETHEUS_PATH


# --- Grafana ----------------------------------------------------------------------------


def test_grafana_datasource_has_the_fixed_uid() -> None:
    config = load_yaml(DATASOURCE_PATH)
    (datasource,) = as_list(config.get("datasources"), "datasources")
    datasource = as_dict(datasource, "datasource")
    assert datasource["type"] == "prometheus"
    assert datasource["uid"] == DATASOURCE_UID
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource["isDefault"] is True


def test_every_panel_queries_the_provisioned_datasource() -> None:
    config = load_yaml(DATASOURCE_PATH)
    uids = {as_dict(d, "datasource")["uid"] for d in as_list(config["datasources"], "ds")}
    queried = 0
    for panel in iter_panels(load_dashboard()):
        if panel["type"] == "row":
            assert not panel.get("targets"), panel["title"]
            continue
        assert as_dict(panel.get("datasource"), panel["title"])["uid"] in uids, panel["title"]
        targets = as_list(panel.get("targets"), panel["title"])
        assert targets, f"{panel['title']}: no query"
        for target in targets:
            source = as_dict(target, "target").get("datasource")
            if source is not None:
                assert as_dict(source, "target.datasource")["uid"] in uids, panel["title"]
            queried += 1
    assert queried >= 20


def test_grafana_provisioning_is_mounted_where_grafana_reads_it() -> None:
    mounts = {(m.service, m.target): m.source for m in bind_mounts()}
    source = mounts[("grafana", "/etc/grafana/provisioning")]
    assert (REPO / source).resolve() == GRAFANA_PROVISIONING


def test_dashboard_providers_point_at_the_mounted_dashboards() -> None:
    config = load_yaml(DASHBOARD_PROVIDERS_PATH)
    providers = [as_dict(p, "provider") for p in as_list(config.get("providers"), "providers")]
    assert providers
    grafana_mounts = {m.target: m.source for m in bind_mounts() if m.service == "grafana"}
    for provider in providers:
        assert provider["type"] == "file"
        path = str(as_dict(provider.get("options"), "options")["path"])
        assert path in grafana_mounts, f"provider path {path} is not a grafana mount target"
        folder = (REPO / grafana_mounts[path]).resolve()
        assert DASHBOARD_PATH.parent == folder
        assert DASHBOARD_PATH.is_file()
    home = service_environment(compose_services()["grafana"]).get(
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    )
    if home is not None:
        directory = str(PurePosixPath(home).parent)
        assert directory in grafana_mounts
        assert (REPO / grafana_mounts[directory] / PurePosixPath(home).name).is_file()


# --- the dashboard's PromQL -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        (
            'sum by (route) (rate(http_requests_total{route="/signup"}[1m]))',
            {"http_requests_total"},
        ),
        (
            'sum(rate(a_total{status=~"5.."}[5m])) / sum without (le) (rate(a_total[5m]))',
            {"a_total"},
        ),
        (
            "histogram_quantile(0.95, sum(rate(x_seconds_bucket[1m])) by (le, route))",
            {"x_seconds_bucket"},
        ),
        ("time() - max(last_seen_timestamp_seconds) > 1e-3", {"last_seen_timestamp_seconds"}),
        ("a * on (job) group_left (version) b offset 5m", {"a", "b"}),
        ('{__name__="c_total", job="w"}', {"c_total"}),
        ('label_replace(d, "dst", "$1", "src", "(.*)") and bool e', {"d", "e"}),
        ("sum_over_time(f[10m:1m]) unless g @ start()", {"f", "g"}),
        ("SUM BY (job) (h) or vector(0)", {"h"}),
        ("i:recording:rate5m", {"i:recording:rate5m"}),
    ],
)
def test_promql_metric_names(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


def test_dashboard_expressions_read_only_catalogued_metrics() -> None:
    expressions = dashboard_expressions()
    assert len(expressions) >= 20
    used: set[str] = set()
    for expr in expressions:
        names = promql_metric_names(expr)
        assert names, f"no metric in {expr!r}"
        unknown = names - METRIC_CATALOGUE
        assert not unknown, f"{expr!r} reads metrics outside the catalogue: {sorted(unknown)}"
        used |= names
    missing = REQUIRED_DASHBOARD_METRICS - used
    assert not missing, f"no panel shows {sorted(missing)}"


def test_dashboard_expressions_use_no_grafana_variables() -> None:
    # Plain PromQL only, so the same expressions can be sent to a bare Prometheus.
    for expr in dashboard_expressions():
        assert "$" not in expr, expr


def test_latency_panels_use_histogram_quantile_over_buckets() -> None:
    for expr in dashboard_expressions():
        for name in promql_metric_names(expr):
            if name.endswith("_bucket"):
                assert "histogram_quantile(" in expr, expr
                assert "by (le" in expr, expr


# --- Kubernetes -------------------------------------------------------------------------


def test_k8s_files() -> None:
    names = {path.name for path in K8S.glob("*.yaml")}
    assert names == {
        "web.yaml",
        "worker.yaml",
        "migrate-job.yaml",
        "config.yaml",
        "keda-scaledobject.yaml",
    }
    for path, doc in k8s_documents():
        assert {"apiVersion", "kind", "metadata"} <= set(doc), path
        assert "namespace" not in as_dict(doc["metadata"], "metadata"), f"{path}: namespaced"


def workload_deployments() -> Iterator[tuple[str, dict[str, Any]]]:
    for deployment in k8s_objects("Deployment"):
        yield str(as_dict(deployment["metadata"], "metadata")["name"]), deployment


def test_every_deployment_has_probes_resources_and_a_grace_period() -> None:
    deployments = dict(workload_deployments())
    assert set(deployments) == {"signup-web", "signup-worker"}
    for name, deployment in deployments.items():
        spec = as_dict(deployment["spec"], "spec")
        labels = as_dict(as_dict(spec["template"], "template")["metadata"], "meta")["labels"]
        selector = as_dict(as_dict(spec["selector"], "selector")["matchLabels"], "matchLabels")
        assert selector.items() <= as_dict(labels, "labels").items(), name
        assert pod_spec(deployment)["terminationGracePeriodSeconds"] == 30, name
        for container in containers(deployment):
            assert "livenessProbe" in container, name
            resources = as_dict(container.get("resources"), f"{name} resources")
            assert {"requests", "limits"} <= set(resources), name


def probe_path_and_port(container: dict[str, Any], probe: str) -> tuple[str, object]:
    http_get = as_dict(as_dict(container.get(probe), probe).get("httpGet"), "httpGet")
    return str(http_get["path"]), http_get["port"]


def test_web_deployment_probes_health_and_ready() -> None:
    (container,) = containers(k8s_object("Deployment", "signup-web"))
    ports = {p["name"]: p["containerPort"] for p in as_list(container["ports"], "ports")}
    assert ports == {"http": 8000}
    assert probe_path_and_port(container, "livenessProbe") == ("/health", "http")
    assert probe_path_and_port(container, "readinessProbe") == ("/ready", "http")
    assert "command" not in container, "web runs the image's default CMD"


def test_web_service_selects_the_web_pods() -> None:
    service = k8s_object("Service", "signup-web")
    selector = as_dict(as_dict(service["spec"], "spec")["selector"], "selector")
    deployment = k8s_object("Deployment", "signup-web")
    template = as_dict(as_dict(deployment["spec"], "spec")["template"], "template")
    labels = as_dict(as_dict(template["metadata"], "metadata")["labels"], "labels")
    assert selector.items() <= labels.items()
    (port,) = as_list(as_dict(service["spec"], "spec")["ports"], "ports")
    assert as_dict(port, "port")["targetPort"] == "http"


def test_worker_deployment_liveness_on_metrics() -> None:
    deployment = k8s_object("Deployment", "signup-worker")
    (container,) = containers(deployment)
    assert container["command"] == procfile()["worker"]
    ports = {p["name"]: p["containerPort"] for p in as_list(container["ports"], "ports")}
    assert ports == {"metrics": 9100}
    assert probe_path_and_port(container, "livenessProbe") == ("/metrics", "metrics")
    env = container_env(container)
    assert env["PORT"] == "9100"
    assert env["WORKER_SHUTDOWN_GRACE_SECONDS"] == "25"
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert float(env["WORKER_SHUTDOWN_GRACE_SECONDS"]) < grace


def test_migration_job_runs_the_release_command() -> None:
    (job,) = k8s_objects("Job")
    (container,) = containers(job)
    assert container["command"] == procfile()["release"]
    assert pod_spec(job)["restartPolicy"] in {"Never", "OnFailure"}


def test_workloads_take_settings_from_the_config_and_secret() -> None:
    config_maps = {as_dict(c["metadata"], "m")["name"] for c in k8s_objects("ConfigMap")}
    secrets = {as_dict(s["metadata"], "m")["name"] for s in k8s_objects("Secret")}
    secret_keys: set[str] = set()
    for secret in k8s_objects("Secret"):
        secret_keys |= set(secret.get("stringData", {})) | set(secret.get("data", {}))
    assert "DATABASE_URL" in secret_keys
    for kind in ("Deployment", "Job"):
        for workload in k8s_objects(kind):
            for container in containers(workload):
                refs = [as_dict(r, "envFrom") for r in container.get("envFrom", [])]
                used_maps = {
                    as_dict(r["configMapRef"], "ref")["name"] for r in refs if "configMapRef" in r
                }
                used_secrets = {
                    as_dict(r["secretRef"], "ref")["name"] for r in refs if "secretRef" in r
                }
                assert used_maps, kind
                assert used_maps <= config_maps, kind
                assert used_secrets, kind
                assert used_secrets <= secrets, kind


def test_keda_scales_the_worker_on_the_service_stream_and_group() -> None:
    (scaled,) = k8s_objects("ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = as_dict(scaled["spec"], "spec")
    target = as_dict(spec["scaleTargetRef"], "scaleTargetRef")
    worker = k8s_object("Deployment", "signup-worker")
    assert target["name"] == as_dict(worker["metadata"], "metadata")["name"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert spec["minReplicaCount"] == 1
    assert spec["maxReplicaCount"] == 10

    (trigger,) = as_list(spec["triggers"], "triggers")
    trigger = as_dict(trigger, "trigger")
    assert trigger["type"] == "redis-streams"
    metadata = as_dict(trigger["metadata"], "metadata")
    assert all(isinstance(v, str) for v in metadata.values()), "KEDA metadata values are strings"
    keys = Keys()
    assert metadata["stream"] == keys.commands == "signup:commands"
    assert metadata["consumerGroup"] == keys.group == "signup-workers"
    assert metadata["lagCount"] == "100"

    # The address comes from the worker container's environment (host:port, not a URL).
    env_var = metadata.get("addressFromEnv")
    if env_var is not None:
        name = target.get("envSourceContainerName")
        # KEDA's default is the first container.
        container = next(c for c in containers(worker) if name in (None, c["name"]))
        values = container_env(container)
        for config_map in k8s_objects("ConfigMap"):
            values |= {str(k): str(v) for k, v in config_map.get("data", {}).items()}
        assert re.fullmatch(r"[\w.-]+:\d+", values[env_var]), values.get(env_var)
    else:
        assert "address" in metadata or "authenticationRef" in trigger


def test_k8s_redis_namespace_is_the_default_keda_expects() -> None:
    # KEDA's stream and group are fixed strings: a REDIS_NAMESPACE would move the stream.
    for config_map in k8s_objects("ConfigMap"):
        assert "REDIS_NAMESPACE" not in config_map.get("data", {})


# --- Dockerfile -------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_on_python_311_slim() -> None:
    stages = dockerfile_stages()
    assert len(stages) == 2
    builder, runtime = stages
    assert builder.name == "builder"
    assert builder.base == runtime.base == "python:3.11-slim"
    runs = " ".join(i.arguments for i in builder.instructions if i.keyword == "RUN")
    assert "--require-hashes -r requirements.lock" in runs
    assert "pip install --no-deps ." in runs
    copies_from_builder = [
        i.arguments
        for i in runtime.instructions
        if i.keyword == "COPY" and "--from=builder" in i.arguments
    ]
    assert copies_from_builder, "the runtime takes the venv from the builder"


def test_dockerfile_copy_sources_exist() -> None:
    for stage in dockerfile_stages():
        for source in copy_sources(stage):
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"


def test_dockerfile_copy_sources_are_not_dockerignored() -> None:
    ignored = [
        line.strip().rstrip("/")
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for stage in dockerfile_stages():
        for source in copy_sources(stage):
            top = PurePosixPath(source.rstrip("/")).parts[0]
            assert top not in ignored, f"COPY {source} is excluded by .dockerignore"


def test_dockerfile_builder_copies_what_pip_install_needs() -> None:
    builder = dockerfile_stages()[0]
    copied = {source.rstrip("/") for source in copy_sources(builder)}
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = project["tool"]["setuptools"]
    packages = {pattern.rstrip("*") for pattern in setuptools["packages"]["find"]["include"]}
    modules = {f"{module}.py" for module in setuptools["py-modules"]}
    assert {"pyproject.toml", project["project"]["readme"]} <= copied
    assert packages | modules <= copied


def test_dockerfile_runtime_copies_the_sources_and_procfile() -> None:
    runtime = dockerfile_stages()[1]
    copied = {source.rstrip("/") for source in copy_sources(runtime)}
    expected = {"api", "workers", "domain", "storage", "observability"}
    assert expected | {"settings.py", "bootstrap.py", "Procfile"} <= copied


def test_dockerfile_runtime_user_env_healthcheck_and_cmd() -> None:
    runtime = dockerfile_stages()[1]
    user = last_instruction(runtime, "USER").arguments.split(":")[0]
    assert user not in {"root", "0"}
    envs = " ".join(i.arguments for i in runtime.instructions if i.keyword == "ENV")
    assert re.search(r"\bLOG_JSON=true\b", envs)
    healthcheck = exec_form(last_instruction(runtime, "HEALTHCHECK"), "HEALTHCHECK")
    assert healthcheck[0] == "python"
    assert "/health" in healthcheck[-1]
    assert exec_form(last_instruction(runtime, "CMD"), "CMD") == WEB_CMD
