"""Start and stop one broker JVM, tracked by a pid file.

A pid is trusted only while ``/proc/<pid>/cmdline`` still shows ``kafka.Kafka``
with this node's config, so a stale pid file can never make us signal an
unrelated process that reused the number.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

JVM_OPTIONS = (
    "-XX:+UseSerialGC",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
)


def java_command(
    java: str, libs_dir: Path, config: Path, log4j_config: Path, heap: str
) -> list[str]:
    """The command line of one broker: small heap, quiet logging, ``kafka.Kafka``."""
    return [
        java,
        f"-Xmx{heap}",
        "-Xms256m",
        *JVM_OPTIONS,
        f"-Dlog4j2.configurationFile={log4j_config}",
        "-cp",
        f"{libs_dir}/*",
        "kafka.Kafka",
        str(config),
    ]


def spawn_detached(command: list[str], log_file: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session, output appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def is_node_process(pid: int, config: Path) -> bool:
    """True if ``pid`` is alive (not a zombie) and is the broker started with ``config``."""
    _reap(pid)
    # The command line reads empty for a moment while the java launcher execs.
    for _ in range(40):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return False
        if state == "Z":
            return False
        if raw:
            cmdline = raw.split(b"\0")
            return b"kafka.Kafka" in cmdline and str(config).encode() in cmdline
        time.sleep(0.025)
    return False


def running_pid(pid_file: Path, config: Path) -> int | None:
    """The pid from ``pid_file`` if that process is still this node's broker."""
    pid = read_pid(pid_file)
    if pid is not None and is_node_process(pid, config):
        return pid
    return None


def terminate(pid: int, config: Path, grace_s: float = 20.0) -> bool:
    """SIGTERM the broker, SIGKILL after ``grace_s``; True once it is gone."""
    return terminate_all([(pid, config)], grace_s)


def terminate_all(nodes: list[tuple[int, Path]], grace_s: float = 20.0) -> bool:
    """SIGTERM every broker at once, SIGKILL those left after ``grace_s``.

    Signalling all nodes together matters: stopped one by one, the last nodes
    of a quorum lose their controller and wait out the whole grace period.
    """
    alive = [(pid, config) for pid, config in nodes if is_node_process(pid, config)]
    for pid, _ in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    alive = _wait_gone(alive, grace_s)
    for pid, _ in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return not _wait_gone(alive, 5.0)


def _wait_gone(nodes: list[tuple[int, Path]], timeout_s: float) -> list[tuple[int, Path]]:
    """The nodes still alive after waiting up to ``timeout_s`` for all to exit."""
    deadline = time.monotonic() + timeout_s
    while nodes and time.monotonic() < deadline:
        time.sleep(0.1)
        nodes = [(pid, config) for pid, config in nodes if is_node_process(pid, config)]
    return nodes


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our own child, so it leaves no zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
