"""``python -m bench``: the service against the seed-design baseline, over HTTP, with wrk.

    python -m bench            # the full run (about 15 minutes)
    python -m bench --smoke    # every scenario once, for a second or two (about a minute)

It installs wrk (Debian's package) when it is missing, makes databases and Redis namespaces
of its own, starts the processes from the Procfile's lines (and the baseline with uvicorn),
drives each scenario with wrk, prints one table, Redis memory per user and per retained
event, the commands stream's length, then stops every process and removes what it made,
also on Ctrl-C or an error. Only loopback addresses are used.

Each service layout runs one mailer too (the Procfile's line, at its default priority:
``MAILER_BACKGROUND``, the lowest), sending to an SMTP sink the bench starts
(``bench/smtp_sink.py``: it takes every message and keeps none, at the least cost a server
can; at the lowest priority too, since it stands for a server on another host).
Every message is sent before the next run starts (the mailer's catch-up). The signups at
cost 4 are also measured without the mailer, and, with ``--against REV``, with the code of
another git revision (a worktree of this repository): the report says what the events
stream and the mailer cost.

Fairness on a small, shared machine: every target of a phase (the baseline and each service
layout) is started at once, on a database and namespace of its own, and idles while another
is measured. Measured runs are interleaved, target by target in rotating order, and
repeated; the table shows each target's medians. So a drift of the machine's speed during
the run falls on all of them alike.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType

import bcrypt
import redis
from redis.exceptions import ResponseError

from bench import data, worktree
from bench.load import Result, ensure_wrk, run_wrk
from bench.procs import (
    LOOPBACK,
    ROOT,
    Proc,
    Processes,
    base_env,
    free_port,
    procfile,
    smtp_greets,
    wait_http,
    wait_until,
)
from domain.ids import uuid7

START_WITHIN_SECONDS = 30.0
# A mailer still sending what a run left behind after this long is given up on (and said).
CATCH_UP_WITHIN_SECONDS = 120.0
CORES = os.cpu_count() or 1

SIGNUP_4_C32 = "signup cost 4, c32"
SIGNUP_4_C128 = "signup cost 4, c128"
SIGNUP_12 = "signup cost 12, c8"
READ = "read (cache hits), c32"
MIXED = "mixed 90% read / 10% signup, c32"
SCENARIOS = (SIGNUP_4_C32, SIGNUP_4_C128, SIGNUP_12, READ, MIXED)
COST12_CONNECTIONS = 8
GROWTH_SIZES = (10_000, 1_000_000)
GROWTH_READ_IDS = 2_000
RATE_LIMIT_NEVER = 1_000_000_000
# The events stream and the mailer may cost the signups at most this share.
EVENTS_MAILER_FLOOR = 0.9


@dataclass(frozen=True)
class Plan:
    seconds: int  # one measured run
    repeats: int  # measured runs per target and scenario (the median is reported)
    warmup: int  # one unmeasured run per target and script, after start-up
    cost12_seconds: int
    read_ids: int
    growth: bool
    growth_seconds: int


FULL = Plan(
    seconds=8,
    repeats=3,
    warmup=3,
    cost12_seconds=12,
    read_ids=10_000,
    growth=True,
    growth_seconds=6,
)
SMOKE = Plan(
    seconds=2,
    repeats=1,
    warmup=1,
    cost12_seconds=6,  # a cost-12 hash takes ~0.3 s: a few rounds of 8 at least
    read_ids=1_000,
    growth=False,
    growth_seconds=2,
)


@dataclass(frozen=True)
class Layout:
    webs: int
    workers: int
    baseline: bool = False
    # One mailer process (the Procfile's line), sending to the bench's SMTP sink.
    mailer: bool = True
    # The code of another git revision (``--against``): its abbreviated commit id.
    revision: str = ""

    @property
    def label(self) -> str:
        if self.baseline:
            return "baseline (1 process)"
        label = f"service {self.webs} web + {self.workers} worker"
        if self.revision:
            return f"{label} @ {self.revision}"
        return label if self.mailer else f"{label}, no mailer"


BASELINE = Layout(1, 0, baseline=True, mailer=False)


@dataclass
class Target:
    """One implementation under test, on a database and Redis namespace of its own."""

    layout: Layout
    database_url: str
    namespace: str
    port: int = 0
    ids: Path | None = None
    # Added to the scenario name of this target's rows (growth: the table's size).
    suffix: str = ""
    size: int = 0
    # The checkout whose Procfile lines run, in it (another revision's worktree).
    root: Path = ROOT
    mailer: Proc | None = None
    # Its CPU seconds once it was ready: start-up (imports) is not mailing.
    mailer_cpu_at_start: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.layout.label}{self.suffix}"


@dataclass(frozen=True)
class Row:
    scenario: str
    layout: Layout
    result: Result
    runs: int


@dataclass(frozen=True)
class Growth:
    layout: Layout
    size: int
    rows: int
    read: Result
    signup: Result
    seq_scans: int


def median_result(results: list[Result]) -> Result:
    """Each figure's median over the runs (errors are summed)."""
    seconds = statistics.median(r.seconds for r in results)
    return Result(
        requests=round(statistics.median(r.rps for r in results) * seconds),
        seconds=seconds,
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        errors=sum(r.errors for r in results),
    )


@dataclass
class Bench:
    plan: Plan
    layouts: list[Layout]
    admin_url: str
    redis_url: str
    wrk: str
    # A git revision to measure the signups at cost 4 against (``--against``).
    against: str = ""
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-")))
    procs: Processes = field(init=False)
    databases: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    growth: list[Growth] = field(default_factory=list)
    hash_seconds: float = 0.0
    cost12_share: dict[str, float] = field(default_factory=dict)
    starts: int = 0
    worktrees: list[Path] = field(default_factory=list)
    smtp_port: int = 0
    # What the events + mailer line compares the first layout with.
    reference: Layout | None = None
    # Per mailer target: seconds it kept sending after a run and its drain pause.
    catch_up: dict[str, list[float]] = field(default_factory=dict)
    # Per mailer target: CPU seconds its mailer processes used once ready, all phases.
    mailer_cpu: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    smtp_sink_proc: Proc | None = None

    def __post_init__(self) -> None:
        self.procs = Processes(self.log_dir)

    # -- resources ----------------------------------------------------------------------

    def target(self, layout: Layout, role: str, root: Path = ROOT) -> Target:
        name = f"bench_{self.token}_{role}"
        self.databases.append(name)
        # The schema is always this checkout's (for another revision: a superset of its).
        url = data.create_database(self.admin_url, name)
        namespace = f"bench-{self.token}-{role}"
        self.namespaces.append(namespace)
        return Target(layout, url, namespace, root=root)

    def references(self) -> list[Target]:
        """What the signups at cost 4 of the first layout are set against: the same layout
        without its mailer, and with ``--against`` the same layout from that revision (the
        last one is the events + mailer line's reference)."""
        like = self.layouts[0]
        refs = [self.target(replace(like, mailer=False), "nomailer")]
        if self.against:
            root = Path(tempfile.mkdtemp(prefix="bench-rev-"))
            self.worktrees.append(root)
            worktree.add(root, self.against)
            short = worktree.short_name(self.against)
            log(f"revision {self.against} ({short}) checked out in {root}")
            layout = replace(like, mailer="mailer" in procfile(root), revision=short)
            refs.append(self.target(layout, "against", root))
        self.reference = refs[-1].layout
        return refs

    def smtp_sink(self) -> int:
        """The port of the bench's SMTP server, started on first use; it runs until the
        cleanup."""
        if not self.smtp_port:
            port = free_port()
            # It stands in for a mail server on another host: at the lowest CPU priority
            # it takes (almost) nothing from the processes measured.
            command = f"python -m bench.smtp_sink {port}"
            proc = self.smtp_sink_proc = self.procs.start("smtp-sink", command, base_env())
            # It leads a session of its own: with Linux's autogroups the session's nice is
            # what counts against the other processes (see workers/mailer/__main__.py).
            os.setpriority(os.PRIO_PROCESS, proc.popen.pid, 19)
            with contextlib.suppress(OSError):
                os.sched_setscheduler(proc.popen.pid, os.SCHED_IDLE, os.sched_param(0))
                Path(f"/proc/{proc.popen.pid}/autogroup").write_text("19")
            wait_until(
                lambda: smtp_greets(port),
                f"SMTP sink greeting on port {port}",
                [proc],
                START_WITHIN_SECONDS,
            )
            self.smtp_port = port
        return self.smtp_port

    def cleanup(self) -> None:
        self.procs.stop_all()
        for path in self.worktrees:
            try:
                worktree.remove(path)
            except Exception as exc:
                log(f"could not remove the worktree {path}: {exc}")
        for name in self.databases:
            try:
                data.drop_database(self.admin_url, name)
            except Exception as exc:
                log(f"could not drop database {name}: {exc}")
        for ns in self.namespaces:
            try:
                data.delete_namespace(self.redis_url, ns)
            except Exception as exc:
                log(f"could not delete Redis namespace {ns}: {exc}")

    # -- processes ----------------------------------------------------------------------

    @contextlib.contextmanager
    def running(self, targets: list[Target], rounds: int) -> Iterator[None]:
        """Every target's processes, started and ready (``target.port`` set); stopped on
        exit, whatever happens."""
        started: list[Proc] = []
        try:
            for target in targets:
                started += self._start(target, rounds)
            yield
        finally:
            for target in targets:
                if target.mailer is not None:
                    cpu = target.mailer.cpu_seconds() - target.mailer_cpu_at_start
                    self.mailer_cpu[target.label] += cpu
                    target.mailer = None
            for proc in reversed(started):
                self.procs.stop(proc)

    def _start(self, target: Target, rounds: int) -> list[Proc]:
        self.starts += 1
        n, layout = self.starts, target.layout
        target.port = free_port()
        env = base_env(
            DATABASE_URL=target.database_url,
            REDIS_URL=self.redis_url,
            REDIS_NAMESPACE=target.namespace,
            BCRYPT_ROUNDS=str(rounds),
            PORT=str(target.port),
            # All the load comes from one client (127.0.0.1): a limit that never trips,
            # rather than 0 (off), keeps the limiter's Redis round trip in the measured path.
            SIGNUP_RATE_LIMIT=str(RATE_LIMIT_NEVER),
            # As deployed (docker-compose.yml, deploy/k8s, the Dockerfile): JSON log lines.
            LOG_JSON="true",
        )
        started: list[Proc] = []
        if layout.baseline:
            command = (
                "uvicorn --factory bench.baseline:create_app --host 127.0.0.1"
                f" --port {target.port} --loop uvloop --http httptools --no-access-log"
            )
            started.append(self.procs.start(f"{n}-baseline", command, env))
            wait_http(target.port, "/health", started, START_WITHIN_SECONDS)
            return started
        root, lines = target.root, procfile(target.root)
        ns = target.namespace
        names = []
        for i in range(1, layout.workers + 1):
            name = f"bench-{n}.worker.{i}"
            names.append(name)
            # Workers serve /metrics on a $PORT of their own, as honcho would give them.
            worker_env = {**env, "HONCHO_PROCESS_NAME": name, "PORT": str(free_port())}
            started.append(
                self.procs.start(f"{n}-worker.{i}", lines["worker"], worker_env, cwd=root)
            )
        mailer_port = 0
        if layout.mailer:
            mailer_port = free_port()
            mailer_env = {
                **env,
                "HONCHO_PROCESS_NAME": f"bench-{n}.mailer.1",
                "PORT": str(mailer_port),
                "SMTP_URL": f"smtp://{LOOPBACK}:{self.smtp_sink()}",
            }
            target.mailer = self.procs.start(f"{n}-mailer.1", lines["mailer"], mailer_env, cwd=root)
            started.append(target.mailer)
        # More than one web process: uvicorn's own workers on the one port.
        web_env = {**env, "WEB_CONCURRENCY": str(layout.webs)}
        started.append(self.procs.start(f"{n}-web", lines["web"], web_env, cwd=root))
        wait_http(target.port, "/ready", started, START_WITHIN_SECONDS)
        self._wait_joined(f"{ns}:commands", f"{ns}-workers", names, started)
        if layout.mailer:
            wait_http(mailer_port, "/health", started, START_WITHIN_SECONDS)
            self._wait_joined(f"{ns}:events", f"{ns}-mailer", [f"bench-{n}.mailer.1"], started)
            assert target.mailer is not None
            target.mailer_cpu_at_start = target.mailer.cpu_seconds()
        if layout.webs > 1:
            time.sleep(2)  # /ready was answered by one of uvicorn's workers
        return started

    def _wait_joined(self, stream: str, group: str, names: list[str], procs: list[Proc]) -> None:
        """Until every consumer named has joined the group (its first XREADGROUP)."""
        client = redis.Redis.from_url(self.redis_url, decode_responses=True)

        def joined() -> bool:
            with contextlib.suppress(ResponseError):
                return set(names) <= {str(c["name"]) for c in client.xinfo_consumers(stream, group)}
            return False

        try:
            wait_until(joined, f"{names} in group {group} of {stream}", procs, START_WITHIN_SECONDS)
        finally:
            client.close()

    def _mailer_idle(self, target: Target) -> bool:
        """Whether the target's mailer has been handed, and has acked, every event so far."""
        stream, group = f"{target.namespace}:events", f"{target.namespace}-mailer"
        client = redis.Redis.from_url(self.redis_url, decode_responses=True)
        try:
            last = str(client.xinfo_stream(stream)["last-generated-id"])
            mine = [g for g in client.xinfo_groups(stream) if g["name"] == group]
        except ResponseError:  # no events stream: nothing to send
            return True
        finally:
            client.close()
        return bool(mine) and mine[0]["last-delivered-id"] == last and mine[0]["pending"] == 0

    def _mailer_catch_up(self, target: Target) -> None:
        """Until the target's mailer has sent what the run left it, so it is not sent
        during another target's run (its cost falls on its own target's runs)."""
        started = time.monotonic()
        while not self._mailer_idle(target):
            if time.monotonic() - started > CATCH_UP_WITHIN_SECONDS:
                log(f"  {target.label}: mailer still behind after {CATCH_UP_WITHIN_SECONDS}s")
                break
            time.sleep(0.1)
        waited = time.monotonic() - started
        self.catch_up.setdefault(target.label, []).append(waited)
        if waited >= 1:
            log(f"  {target.label}: mailer caught up {waited:.1f}s after the drain pause")

    # -- measuring ----------------------------------------------------------------------

    def wrk_run(
        self, target: Target, script: str, connections: int, seconds: int, drain: float
    ) -> Result:
        """One wrk run, then a pause for the requests it left in flight to finish, so they
        do not spill into the next run. Signup scripts get a fresh run token every time."""
        args = [] if script == "signup" else [str(target.ids)]
        if script != "read":
            args.append(uuid.uuid4().hex[:12])
        result = run_wrk(
            self.wrk, script, target.port, connections=connections, seconds=seconds, args=args
        )
        time.sleep(drain)
        if target.layout.mailer:
            self._mailer_catch_up(target)
        return result

    def warm_up(self, targets: list[Target], script: str, connections: int, drain: float) -> None:
        if self.plan.warmup:
            for target in targets:
                self.wrk_run(target, script, connections, self.plan.warmup, drain)

    def compare(
        self,
        scenario: str,
        targets: list[Target],
        script: str,
        connections: int,
        seconds: int,
        drain: float = 1.0,
        before_run: Callable[[], None] | None = None,
        after_run: Callable[[Target, Result], None] | None = None,
    ) -> list[Result]:
        """``repeats`` measured runs of each target, interleaved in rotating order; each
        target's medians are recorded (scenario + the target's suffix) and returned, in
        the targets' order."""
        runs: list[list[Result]] = [[] for _ in targets]
        order = list(enumerate(targets))
        for repeat in range(self.plan.repeats):
            shift = repeat % len(order)
            for index, target in order[shift:] + order[:shift]:
                if before_run is not None:
                    before_run()
                result = self.wrk_run(target, script, connections, seconds, drain)
                if after_run is not None:
                    after_run(target, result)
                runs[index].append(result)
                log(
                    f"  {scenario}{target.suffix} | {target.layout.label} #{repeat + 1}:"
                    f" {result.rps:.1f} req/s, p50 {result.p50_ms:.1f} ms,"
                    f" p99 {result.p99_ms:.1f} ms, {result.errors} errors"
                )
        medians = [median_result(r) for r in runs]
        for target, median, r in zip(targets, medians, runs, strict=True):
            self.rows.append(Row(f"{scenario}{target.suffix}", target.layout, median, len(r)))
        return medians

    def sample_ids(self, target: Target, limit: int) -> None:
        ids = data.sample_ids(target.database_url, limit)
        if not ids:
            raise RuntimeError(f"no users in {target.database_url} to read")
        self.starts += 1
        target.ids = self.log_dir / f"{self.starts}-{target.namespace}.ids"
        target.ids.write_text("\n".join(ids) + "\n")

    # -- phases -------------------------------------------------------------------------

    def cost4(self, targets: list[Target], references: list[Target]) -> None:
        """``references`` take part in the signups only (in the same interleaved runs)."""
        log("BCRYPT_ROUNDS=4: signups, reads, mixed")
        seconds = self.plan.seconds
        with self.running(targets, rounds=4):
            with self.running(references, rounds=4):
                signing_up = targets + references
                self.warm_up(signing_up, "signup", 32, drain=1.0)
                self.compare(SIGNUP_4_C32, signing_up, "signup", 32, seconds)
                self.compare(SIGNUP_4_C128, signing_up, "signup", 128, seconds)
            for target in targets:
                # Every user signed up through the service is in its Redis read model.
                self.sample_ids(target, self.plan.read_ids)
            self.warm_up(targets, "read", 32, drain=0.5)
            self.compare(READ, targets, "read", 32, seconds, drain=0.5)
            self.compare(MIXED, targets, "mixed", 32, seconds)

    def cost12(self, targets: list[Target]) -> None:
        """Signups at cost 12 against the bcrypt limit (cores / time of one hash). The hash
        is timed again right before every run, and each run is set against the limit of
        its own moment, so a drift of the machine's speed does not count as a loss."""
        log("BCRYPT_ROUNDS=12: signups")
        samples: list[float] = []
        shares: dict[str, list[float]] = {t.label: [] for t in targets}

        def time_a_hash() -> None:
            samples.append(min(_hash_seconds(12) for _ in range(2)))

        def share(target: Target, result: Result) -> None:
            shares[target.label].append(result.rps * samples[-1] / CORES)

        time_a_hash()
        c = COST12_CONNECTIONS
        # What a run leaves in flight takes c hashes on CORES cores; twice that, for a busy
        # machine.
        drain = 2 * c * samples[0] / CORES + 1.0
        with self.running(targets, rounds=12):
            self.warm_up(targets, "signup", c, drain)
            self.compare(
                SIGNUP_12,
                targets,
                "signup",
                c,
                self.plan.cost12_seconds,
                drain,
                before_run=time_a_hash,
                after_run=share,
            )
        self.hash_seconds = statistics.median(samples)
        self.cost12_share = {label: statistics.median(v) for label, v in shares.items() if v}
        log(
            f"one cost-12 hash: {self.hash_seconds * 1000:.0f} ms (median of {len(samples)},"
            f" each the faster of 2); bcrypt limit {CORES / self.hash_seconds:.2f} req/s"
        )

    def cost_growth(self, layouts: list[Layout]) -> None:
        """Signup and read p50 with 10,000 and with 1,000,000 users in the tables: a
        database of each size per implementation, all running at once, runs interleaved."""
        targets: list[Target] = []
        for size in GROWTH_SIZES:
            for i, layout in enumerate(layouts):
                target = self.target(layout, f"growth{size}_{i}")
                target.suffix, target.size = f" @ {size:,} users (growth)", size
                targets.append(target)
        started = time.monotonic()
        for size in GROWTH_SIZES:
            # Each gets ids of its own kind: the baseline uuid4, the service uuid7.
            loads: list[tuple[str, Callable[[], uuid.UUID]]] = [
                (t.database_url, uuid.uuid4 if t.layout.baseline else uuid7)
                for t in targets
                if t.size == size
            ]
            data.bulk_load(loads, size)
        log(f"bulk-loaded (COPY) {len(targets)} databases in {time.monotonic() - started:.0f}s")
        rows, before = {}, {}
        for target in targets:
            self.sample_ids(target, GROWTH_READ_IDS)
            rows[target.namespace] = data.count_users(target.database_url)
            before[target.namespace] = data.scan_counts(target.database_url)
        seconds = self.plan.growth_seconds
        with self.running(targets, rounds=4):
            for target in targets:
                # Each id read once: the service's own miss path fills its cache; and
                # Postgres's buffers warm, for both.
                _read_each(target)
            self.warm_up(targets, "read", 32, drain=0.5)
            reads = self.compare("read c32", targets, "read", 32, seconds, drain=0.5)
            self.warm_up(targets, "signup", 32, drain=1.0)
            signups = self.compare("signup cost 4, c32", targets, "signup", 32, seconds)
        time.sleep(1.0)  # closed connections have flushed their statistics
        for target, read, signup in zip(targets, reads, signups, strict=True):
            after = data.scan_counts(target.database_url)
            scans = after.seq_scan - before[target.namespace].seq_scan
            ns = target.namespace
            self.growth.append(Growth(target.layout, target.size, rows[ns], read, signup, scans))
            log(f"{target.label}: {scans} sequential scans on users/users_read")

    def run(self, phases: set[str]) -> list[tuple[Target, data.RedisUsage]]:
        targets = [self.target(BASELINE, "baseline")]
        targets += [self.target(layout, f"service{i}") for i, layout in enumerate(self.layouts)]
        references: list[Target] = []
        if "cost4" in phases:
            references = self.references()
            self.cost4(targets, references)
        elif self.against:
            log(f"--against {self.against}: measured in the cost4 phase only, not run")
        if "cost12" in phases:
            self.cost12(targets)
        if "growth" in phases and self.plan.growth:
            self.cost_growth([BASELINE, self.layouts[0]])
        return [
            (t, data.redis_usage(self.redis_url, t.namespace))
            for t in targets + references
            if not t.layout.baseline
        ]


def _hash_seconds(rounds: int) -> float:
    salt = bcrypt.gensalt(rounds)
    started = time.perf_counter()
    bcrypt.hashpw(b"bench-password-1", salt)
    return time.perf_counter() - started


def _read_each(target: Target) -> None:
    assert target.ids is not None
    conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=10)
    try:
        for user_id in target.ids.read_text().split():
            conn.request("GET", f"/users/{user_id}")
            conn.getresponse().read()
    finally:
        conn.close()


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- report ---------------------------------------------------------------------------------


def _find(rows: list[Row], scenario: str, layout: Layout) -> Result | None:
    for row in rows:
        if row.scenario == scenario and row.layout == layout:
            return row.result
    return None


def table(rows: list[Row]) -> str:
    header = ("scenario", "layout", "req/s", "p50 ms", "p99 ms", "errors", "ratio vs baseline")
    lines: list[tuple[str, ...]] = []
    for row in rows:
        r = row.result
        base = _find(rows, row.scenario, BASELINE)
        ratio = f"{r.rps / base.rps:.2f}x" if base is not None and base.rps > 0 else "-"
        lines.append(
            (
                row.scenario,
                row.layout.label,
                f"{r.rps:.1f}",
                f"{r.p50_ms:.1f}",
                f"{r.p99_ms:.1f}",
                str(r.errors),
                ratio,
            )
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]

    def fmt(cells: tuple[str, ...]) -> str:
        padded = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(header), rule, *(fmt(line) for line in lines)])


def _ratios(rows: list[Row], scenario: str, layout: Layout) -> tuple[float, float] | None:
    """(throughput, p99) of a layout relative to the baseline in one scenario."""
    base, ours = _find(rows, scenario, BASELINE), _find(rows, scenario, layout)
    if base and ours and base.rps > 0 and base.p99_ms > 0:
        return ours.rps / base.rps, ours.p99_ms / base.p99_ms
    return None


def _verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def events_mailer_line(bench: Bench) -> str | None:
    """The first layout's signups at cost 4 (events stream + mailer) over the reference's:
    the mean of the per-scenario req/s ratios."""
    like, reference = bench.layouts[0], bench.reference
    if reference is None:
        return None
    shares: list[tuple[str, float]] = []
    for scenario in (SIGNUP_4_C32, SIGNUP_4_C128):
        ours, theirs = _find(bench.rows, scenario, like), _find(bench.rows, scenario, reference)
        if ours is not None and theirs is not None and theirs.rps > 0:
            shares.append((scenario.removeprefix("signup cost 4, "), ours.rps / theirs.rps))
    if not shares:
        return None
    share = statistics.mean(s for _, s in shares)
    each = ", ".join(f"{name} {s * 100:.1f} %" for name, s in shares)
    return (
        f"events + mailer: signups at cost 4 are {share * 100:.1f} % of {reference.label}"
        f" ({like.label}; req/s ratio, mean of {each}; >= {EVENTS_MAILER_FLOOR:.0%})"
        f" -> {_verdict(share >= EVENTS_MAILER_FLOOR)}"
    )


def targets_report(
    bench: Bench, usages: list[tuple[Target, data.RedisUsage, int]]
) -> Iterator[str]:
    rows = bench.rows
    if line := events_mailer_line(bench):
        yield line
    for layout in bench.layouts:
        if ratios := _ratios(rows, READ, layout):
            ratio, p99 = ratios
            yield (
                f"reads >= 2x baseline, p99 no worse ({layout.label}): {ratio:.2f}x,"
                f" p99 {p99:.2f}x -> {_verdict(ratio >= 2 and p99 <= 1)}"
            )
    like = bench.layouts[0]
    for scenario in (SIGNUP_4_C32, SIGNUP_4_C128):
        if ratios := _ratios(rows, scenario, like):
            ratio, p99 = ratios
            yield (
                f"{scenario} >= 1.0x baseline, p99 <= 2x ({like.label}): {ratio:.2f}x,"
                f" p99 {p99:.2f}x -> {_verdict(ratio >= 1 and p99 <= 2)}"
            )
    if bench.hash_seconds:
        limit = CORES / bench.hash_seconds
        for layout in [BASELINE, *bench.layouts]:
            share = bench.cost12_share.get(layout.label)
            if share is not None:
                verdict = "" if layout.baseline else f" -> {_verdict(share >= 0.9)}"
                yield (
                    f"signup cost 12 >= 90% of the bcrypt limit, {CORES} cores /"
                    f" {bench.hash_seconds * 1000:.0f} ms = {limit:.2f} req/s ({layout.label}):"
                    f" {share:.0%} (median over runs of req/s / the limit timed just before"
                    f" the run){verdict}"
                )
    for target, usage, added in usages:
        if usage.users:
            yield (
                f"Redis memory per signed-up user <= 1 KiB ({target.layout.label}):"
                f" {usage.per_user:.0f} B ({usage.per_user_apart_stream:.0f} B without the"
                f" commands stream's {usage.stream_length} kept entries)"
                f" -> {_verdict(usage.per_user <= 1024)}"
            )
        if added:
            # Trimming shows as fewer entries than were ever added; a stream no longer than
            # what was added may still have a cap above that.
            verdict = (
                _verdict(True) if usage.stream_length < added else "UNDECIDED (nothing trimmed yet)"
            )
            yield (
                f"commands stream bounded ({target.layout.label}): XLEN {usage.stream_length}"
                f" after {added} entries added -> {verdict}"
            )
    small, large = GROWTH_SIZES
    for layout in (BASELINE, like):
        a = [g for g in bench.growth if g.layout == layout and g.size == small]
        b = [g for g in bench.growth if g.layout == layout and g.size == large]
        if a and b and a[0].read.p50_ms and a[0].signup.p50_ms:
            read = b[0].read.p50_ms / a[0].read.p50_ms
            signup = b[0].signup.p50_ms / a[0].signup.p50_ms
            scans = a[0].seq_scans + b[0].seq_scans
            ok = read <= 1.2 and signup <= 1.2 and scans == 0
            verdict = "" if layout.baseline else f" -> {_verdict(ok)}"
            yield (
                f"cost growth, p50 at {b[0].rows:,} users within 1.2x of p50 at"
                f" {a[0].rows:,} ({layout.label}): read {read:.2f}x, signup {signup:.2f}x,"
                f" sequential scans {scans}{verdict}"
            )


def _stream_added(redis_url: str, namespace: str) -> int:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        info = client.xinfo_stream(f"{namespace}:commands")
    except ResponseError:
        return 0
    finally:
        client.close()
    return int(info.get("entries-added", info.get("length", 0)))


def report(bench: Bench, usages: list[tuple[Target, data.RedisUsage]]) -> str:
    lines = [table(bench.rows), ""]
    runs = {row.runs for row in bench.rows}
    lines.append(
        f"each row: the median of {'/'.join(map(str, sorted(runs)))} interleaved wrk run(s);"
        " errors: socket errors + responses other than 201 (signup) / 200 (read)"
    )
    with_added: list[tuple[Target, data.RedisUsage, int]] = []
    mailed = 0
    for target, usage in usages:
        added = _stream_added(bench.redis_url, target.namespace)
        with_added.append((target, usage, added))
        kinds = ", ".join(
            f"{kind} {size / usage.users:.0f} B"
            for kind, size in sorted(usage.by_kind.items())
            if usage.users
        )
        label = target.layout.label
        lines += [
            f"Redis memory per user: {usage.per_user:.0f} bytes ({label}:"
            f" MEMORY USAGE summed over {usage.keys} keys / {usage.users} users, the events"
            f" stream apart; by kind of key: {kinds or '-'})",
            f"commands stream length: {usage.stream_length} ({label}: XLEN;"
            f" {added} entries ever added, {usage.stream_pending} pending)",
        ]
        if usage.events_length:
            lines.append(
                f"events stream: {usage.per_event:.0f} bytes per retained event ({label}:"
                f" MEMORY USAGE {usage.events_bytes} B / XLEN {usage.events_length})"
            )
        if waits := bench.catch_up.get(label):
            lines.append(
                f"mailer catch-up: {statistics.median(waits):.1f} s median, {max(waits):.1f} s"
                f" max ({label}: sending what a run left, after its {len(waits)} runs'"
                " drain pauses)"
            )
        if usage.mailer_read and label in bench.mailer_cpu:
            cpu = bench.mailer_cpu[label]
            lines.append(
                f"mailer CPU: {cpu / usage.mailer_read * 1000:.2f} ms per event ({label}:"
                f" {cpu:.1f} s once started, over {usage.mailer_read} events its group read)"
            )
        mailed += usage.mailer_read
    if bench.smtp_sink_proc is not None and mailed:
        cpu = bench.smtp_sink_proc.cpu_seconds()
        lines.append(
            f"SMTP sink CPU: {cpu / mailed * 1000:.2f} ms per message (bench/smtp_sink.py:"
            f" {cpu:.1f} s over the {mailed} events every mailer read)"
        )
    lines += ["", "targets:", *(f"  {line}" for line in targets_report(bench, with_added))]
    return "\n".join(lines)


# -- entry point ----------------------------------------------------------------------------


def _layout(text: str) -> Layout:
    webs, _, workers = text.partition("x")
    return Layout(int(webs), int(workers))


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="every scenario once, briefly")
    parser.add_argument(
        "--layouts",
        default="1x1,2x1",
        help="service layouts WEBSxWORKERS, comma-separated; the first is the like-for-like"
        " one (default: 1x1,2x1)",
    )
    parser.add_argument(
        "--only",
        default="cost4,cost12,growth",
        help="phases: cost4 (signups, reads, mixed), cost12, growth (full mode only)",
    )
    parser.add_argument(
        "--admin-database-url",
        default=os.environ.get(
            "BENCH_ADMIN_DATABASE_URL", "postgresql://root@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument(
        "--against",
        default="",
        metavar="REV",
        help="also measure the signups at cost 4 of the first layout with the code of this git"
        " revision (a worktree, the current schema), e.g. one before the events stream",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    args = parser.parse_args(argv)
    if args.against:
        try:
            worktree.short_name(args.against)
        except RuntimeError as exc:
            parser.error(f"--against {args.against}: {exc}")

    wrk = ensure_wrk()
    bench = Bench(
        plan=SMOKE if args.smoke else FULL,
        layouts=[_layout(text) for text in args.layouts.split(",") if text],
        admin_url=args.admin_database_url,
        redis_url=args.redis_url,
        wrk=wrk,
        against=args.against,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    ok = False
    log(f"run {bench.token}, logs in {bench.log_dir}")
    try:
        usages = bench.run(set(args.only.split(",")))
        print(report(bench, usages), flush=True)
        ok = True
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bench.cleanup()
        if ok and not args.keep_logs:
            shutil.rmtree(bench.log_dir, ignore_errors=True)
        else:
            log(f"logs kept in {bench.log_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
