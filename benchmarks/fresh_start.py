"""A newcomer's path from nothing, N times: empty stack -> topics -> worker -> sample videos done.

Each round gets a brand-new stack state directory and its own free loopback ports for
Kafka (port and port+1, the KRaft controller) and FerretDB, so it never touches the
developer's own stack on 9092/27017; Prometheus is off and so are the workers' metrics
endpoints. The artefact cache (Kafka jars, FerretDB binary; GRAPHRAG_CACHE_DIR or the
default) is shared and kept. A round runs exactly what `make demo` runs:

    stack/localstack.py up --no-prometheus
    graphrag-streams topics create
    graphrag-streams worker --stages all            (background, own process group)
    graphrag-streams submit --transcripts samples/transcripts
    graphrag-streams wait --transcripts samples/transcripts --timeout T

then stops the worker, runs `localstack.py down --wipe` and removes the round directory.
Prints per round the seconds to bring the stack up, to create the topics and from the
start of `submit` to `wait` returning with every video done; then ok rounds, min/median/max
of submit -> done and how many rounds were within --within seconds. Exit 0 only if every
round is ok. No OPENAI_* variable is passed on: extraction is the offline one.

    python benchmarks/fresh_start.py [--rounds 10] [--timeout 120] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable
LOCALSTACK = str(ROOT / "stack" / "localstack.py")
SAMPLES = "samples/transcripts"  # relative to ROOT, as in scripts/demo.sh
LOG_TAIL = 30
# Ports are drawn below the kernel's ephemeral range (usually 32768-60999), so an outgoing
# connection cannot take one between the check and the service binding it.
PORT_RANGE = (20000, 32000)
# Inherited variables that would make a round differ from a newcomer's shell.
DROP_PREFIXES = ("OPENAI_", "GRAPHRAG_", "KAFKA_", "MONGODB_", "FAUST_")
DROP_NAMES = {"REDIS_URL"}


class RoundFailed(Exception):
    """Why a round failed, with the log lines worth showing."""

    def __init__(self, why: str, tail: str = "") -> None:
        super().__init__(why)
        self.tail = tail


class Interrupted(BaseException):
    """SIGTERM to the benchmark: unwind through every finally, like Ctrl-C."""


@dataclass
class Round:
    index: int
    dir: Path
    kafka_port: int
    mongo_port: int
    env: dict[str, str] = field(default_factory=dict)
    stack_up: float | None = None
    topics: float | None = None
    submit_to_done: float | None = None
    submit_to_last_done_at: float | None = None
    error: str | None = None
    tail: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None and self.submit_to_done is not None

    @property
    def worker_log(self) -> Path:
        return self.dir / "worker.log"


# --------------------------------------------------------------------------- ports


def port_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:port and it can be bound (no SO_REUSEADDR: stricter)."""
    with socket.socket() as s:
        s.settimeout(0.3)
        if s.connect_ex(("127.0.0.1", port)) == 0:
            return False
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


def free_ports(avoid: set[int]) -> tuple[int, int]:
    """(kafka, mongo): kafka and kafka+1 (the controller) and mongo free and distinct."""
    rng = random.Random()
    for _ in range(500):
        kafka = rng.randrange(PORT_RANGE[0], PORT_RANGE[1] - 1)
        mongo = rng.randrange(PORT_RANGE[0], PORT_RANGE[1])
        wanted = {kafka, kafka + 1, mongo}
        if len(wanted) < 3 or wanted & avoid:
            continue
        if all(port_free(p) for p in wanted):
            return kafka, mongo
    raise RuntimeError(f"no free loopback ports found in {PORT_RANGE}")


# --------------------------------------------------------------------------- processes


def round_env(r: Round, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(DROP_PREFIXES) and k not in DROP_NAMES}
    env.update({
        # the stack: a fresh state dir and ports, the shared artefact cache
        "GRAPHRAG_STACK_DIR": str(r.dir / "stack"),
        "GRAPHRAG_CACHE_DIR": str(cache),
        "GRAPHRAG_KAFKA_PORT": str(r.kafka_port),
        "GRAPHRAG_MONGO_PORT": str(r.mongo_port),
        # the apps: development config pointed at this round's stack
        "GRAPHRAG_ENV": "development",
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{r.kafka_port}",
        "MONGODB_URI": f"mongodb://127.0.0.1:{r.mongo_port}",
        "GRAPHRAG_MONGODB_DATABASE": f"graphrag_fresh_{os.getpid()}_{r.index}",
        "GRAPHRAG_TRANSCRIPTS_DIR": SAMPLES,
        "GRAPHRAG_METRICS_PORT": "0",
        # Faust's local files (agents/runtime.py) go under $XDG_STATE_HOME: keep them in the round
        # dir, not beside the developer's own workers' in ~/.local/state
        "XDG_STATE_HOME": str(r.dir / "state"),
        "PYTHONUNBUFFERED": "1",
    })
    return env


def tail(path: Path, lines: int = LOG_TAIL) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path.name})"


def run_step(r: Round, name: str, cmd: list[str], timeout: float) -> float:
    """Run one command of the path to completion, output to <round>/<name>.log; its seconds."""
    log = r.dir / f"{name}.log"
    started = time.monotonic()
    with open(log, "ab") as out:
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=r.env, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise RoundFailed(f"`{name}` did not finish within {timeout:.0f}s", tail(log)) from exc
    if proc.returncode != 0:
        raise RoundFailed(f"`{name}` exited with code {proc.returncode}", tail(log))
    return time.monotonic() - started


def cli(*args: str) -> list[str]:
    return [PYTHON, "-m", "streams.cli", *args]


def start_worker(r: Round) -> subprocess.Popen[bytes]:
    with open(r.worker_log, "ab") as out:
        return subprocess.Popen(cli("worker", "--stages", "all", "--metrics-port", "0"), cwd=ROOT, env=r.env,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in the process group, from /proc (Linux)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp ...
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def stop_group(proc: subprocess.Popen[bytes], grace: float = 30.0) -> str | None:
    """SIGTERM the worker's process group, wait up to `grace`, then SIGKILL; a note if it had to."""
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()
        if proc.returncode is not None and not group_members(pgid):
            return None
        time.sleep(0.2)
    left = group_members(pgid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    return f"worker group did not stop within {grace:.0f}s after SIGTERM; SIGKILLed pids {left}"


def stack_down(r: Round) -> str | None:
    """`localstack.py down --wipe` for this round's state dir; a note if anything is left running."""
    notes = []
    try:
        subprocess.run([PYTHON, LOCALSTACK, "down", "--wipe"], cwd=ROOT, env=r.env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, timeout=120, check=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        notes.append(f"`localstack.py down --wipe` failed: {exc}")
    try:
        proc = subprocess.run([PYTHON, LOCALSTACK, "status", "--json"], cwd=ROOT, env=r.env, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=60)
        running = [s["service"] for s in json.loads(proc.stdout)["services"] if s["running"]]
        if running:
            notes.append(f"still running after `down`: {', '.join(running)}")
    except (subprocess.TimeoutExpired, ValueError, KeyError) as exc:
        notes.append(f"`localstack.py status --json` failed: {exc}")
    for port in (r.kafka_port, r.kafka_port + 1, r.mongo_port):
        with socket.socket() as s:
            s.settimeout(0.3)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                notes.append(f"port {port} still answers after `down`")
    return "; ".join(notes) or None


# --------------------------------------------------------------------------- one round


def wait_done(r: Round, worker: subprocess.Popen[bytes], timeout: float, interval: float) -> None:
    """`wait` until every sample video is finished; fail early when the worker dies."""
    log = r.dir / "wait.log"
    with open(log, "ab") as out:
        waiter = subprocess.Popen(cli("wait", "--transcripts", SAMPLES, "--timeout", str(timeout),
                                      "--interval", str(interval)),
                                  cwd=ROOT, env=r.env, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
    try:
        hard_deadline = time.monotonic() + timeout + 60
        while waiter.poll() is None:
            if worker.poll() is not None:
                raise RoundFailed(f"the worker exited with code {worker.returncode} while waiting",
                                  tail(r.worker_log))
            if time.monotonic() > hard_deadline:
                raise RoundFailed(f"`wait` did not return within {timeout + 60:.0f}s", tail(log, 5))
            time.sleep(0.1)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    if waiter.returncode != 0:
        last = tail(log, 1).strip()
        raise RoundFailed(f"`wait` exited with code {waiter.returncode}: {last}", tail(r.worker_log))


def check_videos(r: Round, submitted_at: float) -> None:
    """Every sample video must be done (`wait` also returns 0 when some failed)."""
    proc = subprocess.run(cli("status", "--json"), cwd=ROOT, env=r.env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    if proc.returncode != 0:
        raise RoundFailed(f"`status --json` exited with code {proc.returncode}: {proc.stderr.strip()[-300:]}")
    videos = json.loads(proc.stdout)["videos"]
    bad = [f"{v['video_id']} {v['status']}" + (f" ({v['error']})" if v.get("error") else "")
           for v in videos if v["status"] != "done"]
    if bad:
        raise RoundFailed(f"not done: {'; '.join(bad)}", tail(r.worker_log))
    done = []
    for v in videos:
        if v.get("done_at"):
            at = datetime.fromisoformat(v["done_at"])
            done.append((at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp())
    if done:
        r.submit_to_last_done_at = max(done) - submitted_at


def run_round(r: Round, args: argparse.Namespace) -> None:
    worker: subprocess.Popen[bytes] | None = None
    try:
        r.stack_up = run_step(r, "stack-up", [PYTHON, LOCALSTACK, "up", "--no-prometheus",
                                              "--timeout", str(args.up_timeout)], args.up_timeout + 120)
        r.topics = run_step(r, "topics", cli("topics", "create"), 120)
        worker = start_worker(r)
        submitted_wall, submitted = time.time(), time.monotonic()
        run_step(r, "submit", cli("submit", "--transcripts", SAMPLES), 120)
        if worker.poll() is not None:
            raise RoundFailed(f"the worker exited with code {worker.returncode}", tail(r.worker_log))
        wait_done(r, worker, args.timeout, args.interval)
        r.submit_to_done = time.monotonic() - submitted
        check_videos(r, submitted_wall)
    except RoundFailed as exc:
        r.error, r.tail = str(exc), exc.tail
        r.submit_to_done = None
    except (KeyboardInterrupt, Interrupted):
        r.error, r.submit_to_done = "interrupted", None
        raise
    except Exception as exc:  # a bug here or an unexpected answer: report it, clean up, go on
        r.error, r.submit_to_done = f"{type(exc).__name__}: {exc}", None
        r.tail = tail(r.worker_log) if r.worker_log.exists() else ""
    finally:
        notes = []
        if worker is not None:
            note = stop_group(worker)
            if note:
                notes.append(note)
        note = stack_down(r)
        if note:
            notes.append(note)
        if notes and r.error is None:
            r.error = "; ".join(notes)  # a round that leaves something behind is not ok
        elif notes:
            r.error += "; " + "; ".join(notes)


def describe(r: Round, rounds: int) -> str:
    parts = []
    if r.stack_up is not None:
        parts.append(f"stack up {r.stack_up:.1f} s")
    if r.topics is not None:
        parts.append(f"topics {r.topics:.1f} s")
    if r.submit_to_done is not None:
        done = f"last video done {r.submit_to_done:.1f} s after submit"
        if r.submit_to_last_done_at is not None:
            done += f" (sink's done_at +{r.submit_to_last_done_at:.1f} s)"
        parts.append(done)
    verdict = "ok" if r.ok else f"FAILED: {r.error}"
    return f"round {r.index}/{rounds}: " + ": ".join([", ".join(parts), verdict] if parts else [verdict])


# --------------------------------------------------------------------------- main


def default_cache() -> Path:
    if os.environ.get("GRAPHRAG_CACHE_DIR"):
        return Path(os.environ["GRAPHRAG_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "graphrag-streams"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="fresh starts to run (default 10)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="`wait --timeout`: seconds for every sample video to finish (default 120)")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="`wait --interval`: seconds between its checks, i.e. the measurement's "
                             "resolution (default 1; scripts/demo.sh uses 2)")
    parser.add_argument("--up-timeout", type=float, default=120.0, help="`localstack.py up --timeout` (default 120)")
    parser.add_argument("--within", type=float, default=60.0,
                        help="count the rounds whose submit -> done took at most this long (default 60)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the per-round directories go (default: a new temporary directory)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    cache = default_cache()
    own_workdir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="graphrag-fresh-")) if own_workdir else args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)

    def on_sigterm(_signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the clean-up short
        raise Interrupted()

    signal.signal(signal.SIGTERM, on_sigterm)
    print(f"{args.rounds} fresh start(s) of the sample videos in {SAMPLES}; artefact cache {cache} (shared), "
          f"round dirs under {workdir}", flush=True)
    results: list[Round] = []
    try:
        used: set[int] = set()
        for i in range(1, args.rounds + 1):
            kafka, mongo = free_ports(used)
            used |= {kafka, kafka + 1, mongo}
            r = Round(i, workdir / f"round-{i:02d}", kafka, mongo)
            r.dir.mkdir(parents=True)
            r.env = round_env(r, cache)
            results.append(r)
            try:
                run_round(r, args)
            finally:
                print(describe(r, args.rounds), flush=True)
                if not r.ok:
                    if r.tail:
                        print("\n".join("    " + line for line in r.tail.splitlines()), flush=True)
                    print(f"    (ports: Kafka {kafka}/{kafka + 1}, FerretDB {mongo}; "
                          f"database {r.env['GRAPHRAG_MONGODB_DATABASE']})", flush=True)
                shutil.rmtree(r.dir, ignore_errors=True)
    except (KeyboardInterrupt, Interrupted):
        print("interrupted; the round in progress was cleaned up", flush=True)
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    ok = [r for r in results if r.ok]
    print(f"fresh starts ok={len(ok)}/{args.rounds}")
    times = [r.submit_to_done for r in ok if r.submit_to_done is not None]
    if times:
        print(f"submit -> last video done: min {min(times):.1f} s, median {statistics.median(times):.1f} s, "
              f"max {max(times):.1f} s")
        ups = [r.stack_up for r in ok if r.stack_up is not None]
        print(f"stack up: min {min(ups):.1f} s, median {statistics.median(ups):.1f} s, max {max(ups):.1f} s")
    within = sum(1 for t in times if t <= args.within)
    print(f"within {args.within:.0f} s of submit: {within}/{args.rounds}")
    return 0 if len(ok) == args.rounds else 1


if __name__ == "__main__":
    sys.exit(main())
