"""``devicelink token`` with a stored key, timed as a whole process against ``python -c
pass`` (the performance issue's target: at most 2 x its wall time). Run by hand::

    .venv/bin/python -m bench.token_startup                 # 60 runs of each, medians
    .venv/bin/python -m bench.token_startup --runs 200 --hyperfine
    .venv/bin/python -m bench.token_startup --imports       # where the time goes
    .venv/bin/python -m bench.token_startup --before /tmp/before/src   # against another tree

Each scenario is one command line in its own environment: a temporary home whose
credentials file (mode 0600) holds a key for one server, the server remembered as the
last one logged in to. The scenarios run in turns (run 1 of each, then run 2...), so a busy
moment of the machine hits all alike; each run is checked (exit 0, the key on standard
output). For each: the median wall time (fork to exit, measured here with
``time.perf_counter``), its ratio to ``python -c pass`` of the same venv, and the median
CPU time (user + system, from ``wait4``), steadier than the wall time on a shared machine.

``--hyperfine`` runs the same command lines through hyperfine (``apt-get install
hyperfine``) afterwards and prints its summary, as a second opinion.

The first row after ``python -c pass`` is the target's: a key in the file, the second call
on (the first, after a login, a logout or a change of the environment, keeps the store's
answer in ``token-cache``, see ``devicelink.client.token_cache``, and the next ones print it
from there). The row after it removes that file before each run: what a first call costs,
the store read and the answer written.

The keyring: keyring's own discovery (importing it and its backends, asking each whether it
works) costs more than the rest of the command. A machine without a keyring can say so
with ``PYTHON_KEYRING_BACKEND=keyring.backends.null.Keyring`` (keyring's own variable), and
``devicelink token`` then never imports keyring: the target's row. The other rows show what
the keyring costs: discovery finding nothing usable (no environment variable: what a
server that says nothing pays), and a key kept in a keyring (the cheapest there is, the
JSON-file backend of the tests, tests/client_cli/file_keyring.py; a real Secret Service adds
its D-Bus round trips). The last of them runs the Click command itself, as ``devicelink
token`` ran before the launcher; ``--before SRC`` adds the same for another tree (say the
commit before), with its own keyring handling, searching and turned off.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import REPO_DIR, BenchError, log, venv_command

SERVER = "https://login.example.com"
KEY = "dlk_benchmarkkey0123456789_check"
KEYRING_OFF = "keyring.backends.null.Keyring"
TARGET = 2.0
"""``devicelink token`` with a stored key: at most this many times ``python -c pass``."""

_SAVE = """
import sys
from devicelink.client import Credential, CredentialStore
store = CredentialStore(warn=lambda message: None)
where = store.save(Credential(server=sys.argv[1], access_token=sys.argv[2], client_id="c"))
assert where == sys.argv[3], where
"""


@dataclass
class Scenario:
    name: str
    command: list[str]
    env: dict[str, str]
    output: str
    uncached: Path | None = None
    """The cached answer (``token-cache``) to remove before each run: the first call after
    a login, a logout or any change to the environment."""
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)

    def run(self) -> None:
        if self.uncached is not None:
            self.uncached.unlink(missing_ok=True)
        started = time.perf_counter()
        process = subprocess.Popen(
            self.command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _, status, usage = os.wait4(process.pid, 0)
        self.walls.append(time.perf_counter() - started)
        self.cpus.append(usage.ru_utime + usage.ru_stime)
        process.returncode = os.waitstatus_to_exitcode(status)
        assert process.stdout is not None
        assert process.stderr is not None
        stdout, stderr = process.stdout.read().decode(), process.stderr.read().decode()
        process.stdout.close()
        process.stderr.close()
        if process.returncode != 0 or stdout != self.output:
            raise BenchError(
                f"{self.name}: exit {process.returncode}, stdout {stdout!r}, stderr {stderr!r}"
            )


@contextmanager
def homes() -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix="devicelink-token-bench-"))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _home_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVICELINK_", "PYTHON"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), **extra)
    return env


def _store_key(env: dict[str, str], where: str) -> None:
    """Log in, as far as the store knows: ``where`` is where the key must land."""
    subprocess.run(
        [sys.executable, "-c", _SAVE, SERVER, KEY, where], env=env, check=True, timeout=60
    )


def scenarios(work: Path, before: Path | None) -> list[Scenario]:
    python, devicelink = sys.executable, venv_command("devicelink")
    file_home, keyring_home = work / "file", work / "keyring"
    keyring_home.mkdir()
    in_file = _home_env(file_home, PYTHON_KEYRING_BACKEND=KEYRING_OFF)
    config_dir = file_home / ".config" / "devicelink"
    _store_key(in_file, str(config_dir / "credentials.json"))
    in_keyring = _home_env(
        keyring_home,
        PYTHON_KEYRING_BACKEND="tests.client_cli.file_keyring.FileKeyring",
        PYTHONPATH=str(REPO_DIR),
        FILE_KEYRING_PATH=str(keyring_home / "keyring.json"),
    )
    _store_key(in_keyring, "keyring")
    looking = {k: v for k, v in in_file.items() if k != "PYTHON_KEYRING_BACKEND"}
    from_env = {**in_file, "DEVICELINK_TOKEN": KEY}
    token, printed = [devicelink, "token"], KEY + "\n"
    clicked = [python, "-c", "from devicelink.cli import main; main()", "token"]
    found = [
        Scenario("python -c pass", [python, "-c", "pass"], in_file, ""),
        Scenario("devicelink token, key in the file, keyring off", token, in_file, printed),
        Scenario("devicelink token, key in the file, keyring off, first call", token, in_file,
                 printed, uncached=config_dir / "token-cache"),
        Scenario("devicelink token, DEVICELINK_TOKEN, keyring off", token, from_env, printed),
        Scenario("devicelink token, key in the file, keyring searched", token, looking, printed),
        Scenario("devicelink token, key in a test keyring (JSON file)", token, in_keyring, printed),
        Scenario("the Click command, key in the file, keyring off", clicked, in_file, printed),
    ]  # fmt: skip
    if before is not None:  # another tree's src/ first on the path: its devicelink
        for what, env in (("keyring searched", looking), ("keyring off", in_file)):
            earlier = {**env, "PYTHONPATH": str(before)}
            found.append(
                Scenario(f"--before tree, key in the file, {what}", clicked, earlier, printed)
            )
    return found


def report(found: list[Scenario]) -> None:
    base = statistics.median(found[0].walls)
    width = max(len(s.name) for s in found)
    print(
        f"{'scenario':<{width}}  wall ms  x pass  cpu ms   (median of {len(found[0].walls)} runs)"
    )
    for scenario in found:
        wall, cpu = statistics.median(scenario.walls), statistics.median(scenario.cpus)
        print(
            f"{scenario.name:<{width}}  {wall * 1000:7.1f}  {wall / base:6.2f}  {cpu * 1000:6.1f}"
        )
    ratio = statistics.median(found[1].walls) / base
    verdict = "met" if ratio <= TARGET else "MISSED"
    print(f"target: {found[1].name} <= {TARGET:g} x python -c pass: {ratio:.2f} ({verdict})")


def import_profile(scenario: Scenario, top: int) -> None:
    """The modules ``-X importtime`` charges most (cumulative microseconds), one run."""
    env = {**scenario.env, "PYTHONPROFILEIMPORTTIME": "1"}
    result = subprocess.run(scenario.command, env=env, capture_output=True, text=True, check=True)
    rows: list[tuple[int, str]] = []
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, total, module = line.removeprefix("import time:").split("|")
            if total.strip().isdigit():
                rows.append((int(total), module.rstrip()))
    print(f"\nimports of {scenario.name}, cumulative microseconds, one run:")
    for total_us, module in sorted(rows, reverse=True)[:top]:
        print(f"{total_us:8d}  {module}")
    print(f"{len(rows)} modules imported")


def hyperfine(found: list[Scenario], runs: int) -> None:
    tool = shutil.which("hyperfine")
    if tool is None:
        log("hyperfine is not installed (apt-get install hyperfine): skipped")
        return
    for scenario in found:
        print(f"\nhyperfine: {scenario.name}", flush=True)
        command = [tool, "-N", "--warmup", "5", "--runs", str(runs), "--style", "basic"]
        if scenario.uncached is not None:
            command += ["--prepare", shlex.join(["rm", "-f", str(scenario.uncached)])]
        subprocess.run([*command, shlex.join(scenario.command)], env=scenario.env, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=60, help="timed runs of each (60)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs of each first (5)")
    parser.add_argument("--hyperfine", action="store_true", help="then the same with hyperfine")
    parser.add_argument("--imports", action="store_true", help="then the import profile")
    parser.add_argument(
        "--before",
        type=Path,
        metavar="SRC",
        help="also time `token` through Click with SRC (the src/ of another tree, e.g. "
        "`git archive COMMIT src | tar -x -C /tmp/before`, then /tmp/before/src) first on "
        "the Python path",
    )
    options = parser.parse_args(argv)
    load = os.getloadavg()[0]
    log(f"load average {load:.2f} (above about 0.5 the figures are high and noisy)")
    with homes() as work:
        found = scenarios(work, options.before)
        for _ in range(options.warmup):
            for scenario in found:
                scenario.run()
        for scenario in found:
            scenario.walls.clear()
            scenario.cpus.clear()
        for number in range(options.runs):
            for scenario in found:
                scenario.run()
            if (number + 1) % 20 == 0:
                log(f"{number + 1} of {options.runs} runs")
        print(f"devicelink token start-up, Python {sys.version.split()[0]}, "
              f"load average {load:.2f} before, {os.getloadavg()[0]:.2f} after")  # fmt: skip
        report(found)
        if options.imports:
            import_profile(found[1], 25)
        if options.hyperfine:
            hyperfine(found, options.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
