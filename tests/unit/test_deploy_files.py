"""The deployment files agree with each other and with the code.

No Docker engine, Kubernetes cluster or Grafana here: every check parses the files
(docker-compose.yml, deploy/**) and compares them with the repository (paths that must
exist, storage/keys.py, the Procfile, pyproject.toml, settings.py) and with the metric
catalogue the service exports (checked against observability/metrics.py's classes).
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from aioprometheus.collectors import Counter, Gauge, Histogram, Registry
from pydantic import ValidationError

from observability.metrics import MailerMetrics, WebMetrics, WorkerMetrics
from settings import DEV_SECRET_KEY, Settings
from storage.keys import Keys
from tests.dashboard_queries import (
    DASHBOARD_PATH,
    dashboard_expressions,
    iter_panels,
    load_dashboard,
    promql_metric_names,
)
from workers.mailer.transport import parse_smtp_url

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
    "email_verifications_total": "counter",
    "verification_resends_total": "counter",
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
    "events_appended_total": "counter",
}
MAILER_METRICS = {
    "emails_sent_total": "counter",
    "email_send_seconds": "histogram",
    "mailer_events_total": "counter",
    "dead_letters_total": "counter",
    "stream_length": "gauge",
    "stream_group_lag": "gauge",
    "stream_group_pending": "gauge",
    "dependency_errors_total": "counter",
}
PROCESS_METRICS = {
    "process_cpu_seconds_total": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_virtual_memory_bytes": "gauge",
    "process_open_fds": "gauge",
    "process_threads": "gauge",
    "process_start_time_seconds": "gauge",
}
# What each process type exports, by its Prometheus job name (deploy/prometheus).
JOB_METRICS = {
    "web": WEB_METRICS | PROCESS_METRICS,
    "worker": WORKER_METRICS | PROCESS_METRICS,
    "mailer": MAILER_METRICS | PROCESS_METRICS,
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
METRIC_CATALOGUE = _series_names(WEB_METRICS | WORKER_METRICS | MAILER_METRICS | PROCESS_METRICS)

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
        "events_appended_total",
        "stream_length",
        "emails_sent_total",
        "email_send_seconds_bucket",
        "email_verifications_total",
        "verification_resends_total",
    }
)
# Stream gauges: workers report the commands and events streams (every group on events,
# downstream teams' included), mailers the events stream.
STREAM_GAUGES = frozenset({"stream_length", "stream_group_lag", "stream_group_pending"})

APP_ENV = {
    "DATABASE_URL": "postgresql://signup:signup@postgres:5432/signup",
    "REDIS_URL": "redis://redis:6379/0",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318",
    "LOG_JSON": "true",
    "SMTP_URL": "smtp://mailpit:1025",
    "PUBLIC_BASE_URL": "http://localhost:8000",
}
# The services that run the app image, and the Procfile process type each one runs.
APP_SERVICES = {"migrate": "release", "web": "web", "worker": "worker", "mailer": "mailer"}
# Stream consumers: each serves /metrics on $PORT and scales by replicas.
CONSUMER_SERVICES = ("worker", "mailer")
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


def container_field_refs(container: dict[str, Any]) -> dict[str, str]:
    """Env variables taken from the pod's own fields (``valueFrom.fieldRef``)."""
    refs: dict[str, str] = {}
    for item in container.get("env", []):
        entry = as_dict(item, "env")
        field_ref = as_dict(entry.get("valueFrom", {}), "valueFrom").get("fieldRef")
        if field_ref is not None:
            refs[str(entry["name"])] = str(as_dict(field_ref, "fieldRef")["fieldPath"])
    return refs


def k8s_config_values() -> tuple[dict[str, str], dict[str, str]]:
    """The ConfigMap's data and the Secret's values, as every workload receives them."""
    config: dict[str, str] = {}
    for config_map in k8s_objects("ConfigMap"):
        config |= {str(k): str(v) for k, v in config_map.get("data", {}).items()}
    secret: dict[str, str] = {}
    for item in k8s_objects("Secret"):
        assert "data" not in item, "placeholders go in stringData, readable in review"
        secret |= {str(k): str(v) for k, v in item.get("stringData", {}).items()}
    return config, secret


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


def test_dashboard_panels_tile_the_grid_without_overlapping() -> None:
    panels = as_list(load_dashboard().get("panels"), "panels")
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = as_dict(panel["gridPos"], "gridPos")
        x, y, w, h = (int(grid[k]) for k in ("x", "y", "w", "h"))
        assert x >= 0, panel["title"]
        assert x + w <= 24, f"{panel['title']}: outside the 24 columns"
        if panel["type"] == "row":
            assert (x, w, h) == (0, 24, 1), f"{panel['title']}: a row spans the width"
        for cell in ((cx, cy) for cx in range(x, x + w) for cy in range(y, y + h)):
            assert cell not in cells, f"{panel['title']} overlaps {cells[cell]}"
            cells[cell] = panel["title"]
    tops = [int(as_dict(p["gridPos"], "gridPos")["y"]) for p in panels]
    assert tops == sorted(tops), "panels are listed top to bottom"


# --- docker compose ---------------------------------------------------------------------


def test_compose_has_every_service() -> None:
    assert set(compose_services()) == {
        "postgres",
        "redis",
        "migrate",
        "web",
        "worker",
        "mailer",
        "mailpit",
        "jaeger",
        "prometheus",
        "grafana",
    }


def test_compose_build_points_at_the_dockerfile() -> None:
    built = {name: svc for name, svc in compose_services().items() if "build" in svc}
    assert set(built) == set(APP_SERVICES)
    images = {svc.get("image") for svc in built.values()}
    assert len(images) == 1, "web, worker, mailer and migrate run one image"
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
    for name in APP_SERVICES:
        env = service_environment(compose_services()[name])
        for key, value in APP_ENV.items():
            assert env.get(key) == value, f"{name}: {key}"


def test_compose_secret_key_is_shared_and_marked_compose_only() -> None:
    keys = {
        service_environment(compose_services()[name]).get("SECRET_KEY") for name in APP_SERVICES
    }
    (key,) = keys  # one key: the mailer signs the links the web verifies
    assert key is not None
    assert "compose" in key
    assert key != DEV_SECRET_KEY
    for name in APP_SERVICES:
        assert service_environment(compose_services()[name]).get("ENVIRONMENT") != "production"
    # Published in the repository: copied into a production setting, it is refused.
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings.model_validate({"environment": "production", "secret_key": key})


def test_compose_mail_goes_to_mailpit_and_links_to_the_published_web() -> None:
    services = compose_services()
    mailpit = services["mailpit"]
    assert str(mailpit["image"]).startswith("axllent/mailpit:")
    env = service_environment(services["mailer"])
    server = parse_smtp_url(env["SMTP_URL"])
    assert server.hostname == "mailpit"
    assert str(server.port) in {str(p) for p in mailpit.get("expose", [])}
    assert (server.username, server.password) == (None, None), "Mailpit takes mail without login"
    assert not server.use_tls, "Mailpit has no certificate here"
    assert not server.start_tls, "Mailpit has no certificate here"
    (web_port,) = (str(p).split(":")[0] for p in services["web"]["ports"])
    assert env["PUBLIC_BASE_URL"] == f"http://localhost:{web_port}"
    Settings.model_validate({"public_base_url": env["PUBLIC_BASE_URL"]})


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
    for name in ("postgres", "redis", "web", *CONSUMER_SERVICES):
        assert "test" in as_dict(services[name].get("healthcheck"), f"{name}.healthcheck")

    def conditions(name: str) -> dict[str, str]:
        deps = as_dict(services[name].get("depends_on"), f"{name}.depends_on")
        return {dep: as_dict(spec, dep)["condition"] for dep, spec in deps.items()}

    assert conditions("migrate") == {"postgres": "service_healthy"}
    assert conditions("mailer") == conditions("worker")
    for name in ("web", *CONSUMER_SERVICES):
        deps = conditions(name)
        assert deps["migrate"] == "service_completed_successfully", name
        assert deps["redis"] == "service_healthy", name
    assert services["migrate"]["restart"] == "no", "a one-shot must not be restarted"


def test_compose_processes_match_the_procfile() -> None:
    services = compose_services()
    proc = procfile()
    assert set(APP_SERVICES.values()) == set(proc), "every Procfile process runs in compose"
    for name, process in APP_SERVICES.items():
        if process == "web":
            continue  # the image's CMD, checked against WEB_CMD
        assert command_argv(services[name]["command"]) == proc[process], name
    assert "command" not in services["web"]
    assert proc["web"][:3] == WEB_CMD[:3], "web runs the same app factory"


def test_compose_runs_two_workers() -> None:
    worker = compose_services()["worker"]
    assert as_dict(worker.get("deploy"), "worker.deploy")["replicas"] == 2


@pytest.mark.parametrize("name", CONSUMER_SERVICES)
def test_compose_consumer_replicas_serve_metrics_on_their_port(name: str) -> None:
    service = compose_services()[name]
    env = service_environment(service)
    assert env["PORT"] == "9100"
    assert env["HOST"] == "0.0.0.0"  # noqa: S104 - Prometheus scrapes it from outside
    assert env["PORT"] in {str(p) for p in service.get("expose", [])}
    assert "ports" not in service, f"a published port would stop `--scale {name}=N`"
    assert "container_name" not in service
    probe = command_argv(as_dict(service["healthcheck"], "healthcheck")["test"])
    assert probe[:3] == ["CMD", "python", "-c"]
    assert "os.environ['PORT'] + '/metrics'" in probe[3]
    # SIGKILL comes after stop_grace_period: the shutdown grace must end before it.
    assert service["stop_grace_period"] == "30s"
    assert float(env["WORKER_SHUTDOWN_GRACE_SECONDS"]) < 30


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
    assert published["mailpit"] == {"8025:8025"}, "the web UI only: SMTP stays inside"
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


def test_prometheus_has_a_job_for_every_process_type_with_metrics() -> None:
    processes = set(procfile()) - {"release"}  # the one-shot serves no metrics
    assert set(scrape_configs()) == processes == set(JOB_METRICS)


def test_prometheus_targets_the_web() -> None:
    web = scrape_configs()["web"]
    targets = [
        t for sc in web["static_configs"] for t in as_list(as_dict(sc, "sc")["targets"], "t")
    ]
    assert targets == ["web:8000"]
    assert web.get("metrics_path", "/metrics") == "/metrics"


@pytest.mark.parametrize("name", CONSUMER_SERVICES)
def test_prometheus_targets_every_consumer_replica(name: str) -> None:
    job = scrape_configs()[name]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    (dns,) = as_list(job.get("dns_sd_configs"), "dns_sd_configs")
    dns = as_dict(dns, "dns_sd_config")
    assert dns["type"] == "A", "one A record per replica"
    assert dns["names"] == [name]
    assert str(dns["port"]) == service_environment(compose_services()[name])["PORT"]


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


def declared_metrics(registry: Registry) -> dict[str, str]:
    kinds = {Counter: "counter", Gauge: "gauge", Histogram: "histogram"}
    return {name: kinds[type(c)] for name, c in registry.collectors.items()}


@pytest.mark.parametrize(
    ("job", "registry"),
    [
        ("web", lambda: WebMetrics().registry),
        ("worker", lambda: WorkerMetrics().registry),
        ("mailer", lambda: MailerMetrics().registry),
    ],
)
def test_metric_catalogue_is_what_each_process_declares(
    job: str, registry: Callable[[], Registry]
) -> None:
    assert declared_metrics(registry()) == JOB_METRICS[job]


_JOB_MATCHER = re.compile(r'\bjob\s*=\s*"([^"]*)"')


def test_job_scoped_expressions_read_that_jobs_metrics() -> None:
    scoped = 0
    for expr in dashboard_expressions():
        for job in _JOB_MATCHER.findall(expr):
            assert job in scrape_configs(), f"{expr!r}: no Prometheus job {job}"
            unknown = promql_metric_names(expr) - _series_names(JOB_METRICS[job])
            assert not unknown, f"{expr!r}: job {job} does not export {sorted(unknown)}"
            scoped += 1
    assert scoped >= 3


def test_stream_gauges_are_split_or_filtered_by_stream() -> None:
    # One figure over every stream would add the commands backlog to the events groups'
    # (downstream teams' included): each reading names its stream or splits by it.
    for expr in dashboard_expressions():
        if promql_metric_names(expr) & STREAM_GAUGES:
            filtered = re.search(r"\bstream\s*(=~|!~|!=|=)", expr)
            split = re.search(r"\bby\s*\([^)]*\bstream\b", expr)
            assert filtered or split, expr


_STREAM_MATCHER = re.compile(r'\bstream\s*(=~|=)\s*"([^"]*)"')


def test_stream_matchers_name_the_service_streams() -> None:
    keys = Keys()
    streams = {keys.commands, keys.deadletters, keys.events, keys.mailer_deadletters}
    matchers = [m for expr in dashboard_expressions() for m in _STREAM_MATCHER.findall(expr)]
    assert matchers
    for operator, value in matchers:
        # Prometheus anchors a regex at both ends, as fullmatch does.
        matched = {
            s for s in streams if (re.fullmatch(value, s) if operator == "=~" else s == value)
        }
        assert len(matched) == 1, f"stream{operator}{value!r} matches {sorted(matched)}"


def row_panels(title: str) -> list[dict[str, Any]]:
    """The panels below the (open) row of this title, up to the next row."""
    panels = as_list(load_dashboard().get("panels"), "panels")
    (start,) = [i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == title]
    assert not panels[start].get("collapsed"), title
    following = panels[start + 1 :]
    end = next((i for i, p in enumerate(following) if p["type"] == "row"), len(following))
    return [as_dict(p, "panel") for p in following[:end]]


def panel_expressions(panel: dict[str, Any]) -> list[str]:
    return [str(as_dict(t, "target")["expr"]) for t in as_list(panel.get("targets"), "targets")]


def test_events_and_mail_row() -> None:
    panels = row_panels("Events and mail")
    assert len(panels) >= 8
    exprs = [expr for panel in panels for expr in panel_expressions(panel)]
    used = set().union(*(promql_metric_names(expr) for expr in exprs))
    assert {
        "events_appended_total",
        "stream_length",
        "stream_group_lag",
        "stream_group_pending",
        "emails_sent_total",
        "email_send_seconds_bucket",
        "dead_letters_total",
        "email_verifications_total",
        "verification_resends_total",
    } <= used
    for expr in exprs:
        names = promql_metric_names(expr)
        if names & {"stream_group_lag", "stream_group_pending"}:
            # Every group on the events stream, one series each.
            assert 'stream=~".*:events"' in expr, expr
            assert "by (group)" in expr, expr
        if "dead_letters_total" in names:
            assert 'job="mailer"' in expr, "the workers' dead letters are another panel"
    quantiles = {
        re.sub(r"^histogram_quantile\(([\d.]+),.*", r"\1", expr)
        for expr in exprs
        if "email_send_seconds_bucket" in promql_metric_names(expr)
    }
    assert quantiles == {"0.5", "0.95", "0.99"}


def test_overview_lag_is_the_command_backlog() -> None:
    (lag,) = [p for p in row_panels("Overview") if p["title"] == "Stream lag"]
    (expr,) = panel_expressions(lag)
    assert 'stream=~".*:commands"' in expr, "the events groups' lag is not the workers' backlog"


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
        "mailer.yaml",
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
    assert set(deployments) == {"signup-web", "signup-worker", "signup-mailer"}
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


@pytest.mark.parametrize("process", CONSUMER_SERVICES)
def test_consumer_deployment_liveness_on_metrics(process: str) -> None:
    deployment = k8s_object("Deployment", f"signup-{process}")
    (container,) = containers(deployment)
    assert container["name"] == process
    assert container["command"] == procfile()[process]
    ports = {p["name"]: p["containerPort"] for p in as_list(container["ports"], "ports")}
    assert ports == {"metrics": 9100}
    assert probe_path_and_port(container, "livenessProbe") == ("/metrics", "metrics")
    env = container_env(container)
    assert env["PORT"] == "9100"
    assert env["HOST"] == "0.0.0.0"  # noqa: S104 - the pod's address, for Prometheus
    assert env["WORKER_SHUTDOWN_GRACE_SECONDS"] == "25"
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert float(env["WORKER_SHUTDOWN_GRACE_SECONDS"]) < grace
    # The consumer name in the group: a pod's own, so no two pods share a pending list.
    assert container_field_refs(container) == {"WORKER_NAME": "metadata.name"}
    template = as_dict(as_dict(deployment["spec"], "spec")["template"], "template")
    annotations = as_dict(as_dict(template["metadata"], "metadata")["annotations"], "annotations")
    assert annotations["prometheus.io/port"] == env["PORT"]
    assert annotations["prometheus.io/path"] == "/metrics"


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


def test_every_scaled_object_targets_a_consumer_deployment() -> None:
    names = {as_dict(s["metadata"], "metadata")["name"] for s in k8s_objects("ScaledObject")}
    assert names == {f"signup-{process}" for process in CONSUMER_SERVICES}


@pytest.mark.parametrize(
    ("process", "stream", "group", "lag_count", "max_replicas"),
    [
        ("worker", Keys().commands, Keys().group, "100", 10),
        ("mailer", Keys().events, Keys().mailer_group, "50", 5),
    ],
)
def test_keda_scales_on_the_lag_of_the_consumer_group(
    process: str, stream: str, group: str, lag_count: str, max_replicas: int
) -> None:
    scaled = k8s_object("ScaledObject", f"signup-{process}")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = as_dict(scaled["spec"], "spec")
    target = as_dict(spec["scaleTargetRef"], "scaleTargetRef")
    deployment = k8s_object("Deployment", f"signup-{process}")
    assert target["name"] == as_dict(deployment["metadata"], "metadata")["name"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert spec["minReplicaCount"] == 1
    assert spec["maxReplicaCount"] == max_replicas

    (trigger,) = as_list(spec["triggers"], "triggers")
    trigger = as_dict(trigger, "trigger")
    assert trigger["type"] == "redis-streams"
    metadata = as_dict(trigger["metadata"], "metadata")
    assert all(isinstance(v, str) for v in metadata.values()), "KEDA metadata values are strings"
    # Fixed strings in KEDA: they must be the names the code uses by default.
    assert metadata["stream"] == stream
    assert metadata["consumerGroup"] == group
    # With lagCount KEDA reads XINFO GROUPS lag, a backlog nobody has read yet included.
    assert metadata["lagCount"] == lag_count

    # The address comes from the container's environment (host:port, not a URL).
    env_var = metadata.get("addressFromEnv")
    if env_var is not None:
        name = target.get("envSourceContainerName")
        # KEDA's default is the first container.
        matching = [c for c in containers(deployment) if name in (None, c["name"])]
        assert matching, f"envSourceContainerName {name} is not a container of {process}"
        values = container_env(matching[0]) | k8s_config_values()[0]
        assert re.fullmatch(r"[\w.-]+:\d+", values[env_var]), values.get(env_var)
    else:
        assert "address" in metadata or "authenticationRef" in trigger


def test_keda_stream_and_group_names() -> None:
    # Spelled out once, so a change in storage/keys.py shows up here as well as in KEDA.
    keys = Keys()
    assert (keys.commands, keys.group) == ("signup:commands", "signup-workers")
    assert (keys.events, keys.mailer_group) == ("signup:events", "signup-mailer")


# Read by KEDA (REDIS_ADDRESS) and by the OpenTelemetry SDK, not by settings.py.
NOT_SETTINGS = {"REDIS_ADDRESS", "OTEL_EXPORTER_OTLP_ENDPOINT"}
SECRET_SETTINGS = {"DATABASE_URL", "SECRET_KEY", "SMTP_URL"}


def test_k8s_config_and_secret_hold_the_mail_settings() -> None:
    config, secret = k8s_config_values()
    assert set(secret) >= SECRET_SETTINGS
    assert not SECRET_SETTINGS & set(config), "credentials belong in the Secret"
    assert {"PUBLIC_BASE_URL", "MAIL_FROM"} <= set(config)
    assert config["ENVIRONMENT"] == "production"
    # settings.py ignores unknown variables: a misspelt one would be silently dropped.
    unknown = {k for k in config | secret if k.lower() not in Settings.model_fields}
    assert unknown <= NOT_SETTINGS, sorted(unknown - NOT_SETTINGS)


def test_k8s_placeholders_are_obvious_and_nothing_starts_on_them() -> None:
    config, secret = k8s_config_values()
    values = {k.lower(): v for k, v in (config | secret).items() if k not in NOT_SETTINGS}
    assert "CHANGE-ME" in secret["SECRET_KEY"]
    assert "CHANGE-ME" in secret["DATABASE_URL"]
    server = parse_smtp_url(secret["SMTP_URL"])
    assert server.hostname.endswith("example.com")
    assert server.password == "CHANGE-ME"
    assert server.start_tls or server.use_tls, "a production SMTP login goes over TLS"
    for key in ("PUBLIC_BASE_URL", "MAIL_FROM"):
        assert "example.com" in config[key], key  # reserved (RFC 2606): never a real site
    # ENVIRONMENT=production refuses the placeholder key: no process starts on it ...
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings.model_validate(values)
    # ... and once it is replaced, every other value is a valid setting.
    settings = Settings.model_validate(values | {"secret_key": "x" * 48})
    assert settings.public_base_url == config["PUBLIC_BASE_URL"]
    assert settings.smtp_url is not None


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
