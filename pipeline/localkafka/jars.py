"""Java and the Apache Kafka jars: found once, cached outside the work tree.

The jars come from Maven Central through ``mvn dependency:copy-dependencies``
on the bundled ``pom.xml``. A completed download leaves a marker file, so later
starts never call Maven again.
"""

from __future__ import annotations

import fcntl
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from pipeline.localkafka.errors import (
    JarResolutionError,
    JavaNotFoundError,
    MavenNotFoundError,
)

MIN_JAVA = 17
_COMPLETE_MARKER = ".complete"
_MVN_TIMEOUT_S = 900


def find_java() -> str:
    """Path of a ``java`` of version 17 or newer, or a :class:`JavaNotFoundError`."""
    java = shutil.which("java")
    if java is None:
        raise JavaNotFoundError(
            f"`java` not found; install Java {MIN_JAVA}+ (e.g. `apt-get install -y "
            "openjdk-17-jre-headless`) and put it on the PATH"
        )
    try:
        result = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise JavaNotFoundError(f"`{java} -version` failed ({exc}); reinstall Java") from exc
    major = java_major_version(result.stderr + result.stdout)
    if major is None or major < MIN_JAVA:
        found = "an unknown version" if major is None else f"Java {major}"
        raise JavaNotFoundError(
            f"{java} is {found}; Kafka needs Java {MIN_JAVA}+ (install "
            "openjdk-17-jre-headless or newer and put it first on the PATH)"
        )
    return java


def java_major_version(version_output: str) -> int | None:
    """The major version from ``java -version`` output (``1.8`` counts as 8)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2) is not None:
        return int(match.group(2))
    return major


def jars_ready(libs_dir: Path) -> bool:
    """True once a previous resolution into ``libs_dir`` completed."""
    return (libs_dir / _COMPLETE_MARKER).is_file()


def ensure_jars(libs_dir: Path, kafka_version: str) -> Path:
    """Resolve the Kafka jars into ``libs_dir`` unless already there; return it."""
    if jars_ready(libs_dir):
        return libs_dir
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MavenNotFoundError(
            "`mvn` not found; install Maven (`apt-get install -y maven`) so the Kafka "
            f"{kafka_version} jars can be fetched from Maven Central"
        )
    work_dir = libs_dir.parent
    work_dir.mkdir(parents=True, exist_ok=True)
    # Two first starts at once (a test session and `fraud kafka up`) must not interleave.
    with (work_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if jars_ready(libs_dir):
            return libs_dir
        _resolve(mvn, work_dir, libs_dir, kafka_version)
    return libs_dir


def _resolve(mvn: str, work_dir: Path, libs_dir: Path, kafka_version: str) -> None:
    pom = work_dir / "pom.xml"
    pom.write_bytes(resources.files("pipeline.localkafka").joinpath("pom.xml").read_bytes())
    partial = work_dir / "libs.partial"
    shutil.rmtree(partial, ignore_errors=True)
    command = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(pom),
        f"-Dkafka.version={kafka_version}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={partial}",
        "-DincludeScope=runtime",
    ]
    try:
        result = subprocess.run(
            command,
            cwd=work_dir,
            capture_output=True,
            text=True,
            timeout=_MVN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise JarResolutionError(
            f"mvn took over {_MVN_TIMEOUT_S} s fetching Kafka {kafka_version}; "
            "check that Maven Central is reachable (proxy in ~/.m2/settings.xml) and retry"
        ) from exc
    if result.returncode != 0 or not any(partial.glob("kafka_2.13-*.jar")):
        detail = _last_error_line(result.stdout + result.stderr)
        raise JarResolutionError(
            f"mvn could not fetch the Kafka {kafka_version} jars from Maven Central "
            f"(exit {result.returncode}: {detail}); check network access or the proxy in "
            "~/.m2/settings.xml, then retry"
        )
    shutil.rmtree(libs_dir, ignore_errors=True)
    partial.rename(libs_dir)
    (libs_dir / _COMPLETE_MARKER).write_text(kafka_version + "\n")


def _last_error_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line]
    chosen = (errors or lines or ["no output"])[0 if errors else -1]
    return re.sub(r"\x1b\[[0-9;]*m", "", chosen)[:300]
