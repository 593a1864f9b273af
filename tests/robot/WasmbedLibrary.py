"""Robot Framework keywords that drive a Wasmbed installation through the
`wasmbed` command, as an operator would: a gateway, emulated devices running
the real firmware, and the gateway's HTTP/JSON interface.

Everything runs in a temporary working directory: the installation made by
`wasmbed certs init`, the gateway's database and log, the devices' state
directories and the emulator's output. The directory is deleted when the
suite passes and kept (its path is logged) when it fails.

Only the standard library and Robot Framework are used.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any, NoReturn

from robot.api import Failure, SkipExecution, logger
from robot.libraries.BuiltIn import BuiltIn
from robot.utils import timestr_to_secs

# The repository root: this file is tests/robot/WasmbedLibrary.py.
ROOT = Path(__file__).resolve().parents[2]

# How long a stopped process may take before it is killed, in seconds.
STOP_GRACE = 10.0
# How long the gateway and the emulator may take to come up, in seconds.
START_TIMEOUT = 30.0
# Lines of a device's console shown when a wait fails.
TAIL_LINES = 20
# The enrolled line, with the device id as its group.
ENROLLED = re.compile(r"agent: enrolled as device ([0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12})")
# A console line as `wasmbed emulator run` prints it: `[qemu-0] text`.
DEVICE_LINE = re.compile(r"^\[([^\]\s]+)\] ?(.*)$")
# A device the emulator manager started: `# started qemu-0 pid=... ...`.
STARTED_LINE = re.compile(r"^# started (\S+) ")


def _repo_path(env: str, default: str) -> Path:
    """A path from the environment variable `env`, else `default` under the
    repository root."""
    value = os.environ.get(env)
    return Path(value) if value else ROOT / default


def _free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _die_with_parent() -> None:
    """In the child, before exec: have Linux send SIGINT (a clean stop) when
    the Robot process dies, so that not even a killed run leaves a gateway
    or emulators behind. A no-op where prctl is not available.

    Safe as a `preexec_fn` although the reader thread may be running: it
    makes one system call through a function resolved in the parent, and
    takes no lock another thread could hold."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, _SIGINT)


def _load_prctl() -> Any:
    # Resolved once, in the parent: the child only makes the call.
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PR_SET_PDEATHSIG = 1
_SIGINT = int(signal.SIGINT)
_PRCTL = _load_prctl() if os.uname().sysname == "Linux" else None


def _tail(path: Path, lines: int) -> str:
    """The last `lines` lines of the text file at `path`, or a note that it
    does not exist."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


class WasmbedLibrary:
    """Keywords for a gateway and emulated devices run with the `wasmbed`
    command.

    The `wasmbed` binary is `WASMBED_BIN`, else `target/debug/wasmbed`; the
    firmware `WASMBED_FIRMWARE`, else the release build under
    `firmware/mps2`; the modules are `NAME.wasm` in `WASMBED_APPS`, else
    `target/apps`. Relative defaults are resolved from the repository root.
    """

    ROBOT_LIBRARY_SCOPE = "SUITE"

    def __init__(self) -> None:
        self.wasmbed = _repo_path("WASMBED_BIN", "target/debug/wasmbed")
        self.firmware = _repo_path(
            "WASMBED_FIRMWARE",
            "firmware/mps2/target/thumbv7m-none-eabi/release/wasmbed-mps2",
        )
        self.apps = _repo_path("WASMBED_APPS", "target/apps")
        self.workdir: Path | None = None
        self.gateway: subprocess.Popen[bytes] | None = None
        self.tls: ssl.SSLContext | None = None
        self.gateway_log: Path | None = None
        self.device_port = 0
        self.http_port = 0
        self.emulator: subprocess.Popen[str] | None = None
        self.emulator_log: Path | None = None
        self.reader: threading.Thread | None = None
        self.devices: list[str] = []
        # Deployments made by Deploy Module and not removed yet.
        self.deployments: list[int] = []
        # Every line the emulator printed, by device; lines of the manager
        # itself (`# started ...`) are under "#". Guarded by `changed`.
        self.consoles: dict[str, list[str]] = {}
        self.emulator_done = False
        self.changed = threading.Condition()
        self._atexit_registered = False

    # ----------------------------------------------------------------- keywords

    def start_gateway(self) -> None:
        """Creates a working directory and an installation in it
        (`wasmbed certs init`), then starts `wasmbed gateway` on two free
        ports with pairing open and 1 s heartbeats, and waits until its HTTP
        interface answers. The gateway's log goes to `gateway.log` in the
        working directory."""
        if self.gateway is not None:
            raise Failure("the gateway is already running")
        if not self.wasmbed.is_file():
            raise Failure(
                f"{self.wasmbed} does not exist: build it with `cargo build -p wasmbed-cli` or set WASMBED_BIN"
            )
        self._register_cleanup()
        self.workdir = Path(tempfile.mkdtemp(prefix="wasmbed-robot-"))
        logger.info(f"working directory {self.workdir}")
        certs = subprocess.run(
            [str(self.wasmbed), "certs", "init", "--dir", str(self.workdir / "pki")],
            env=self._env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if certs.returncode != 0:
            raise Failure(f"`wasmbed certs init` failed ({certs.returncode}):\n{certs.stderr}")
        # The gateway's HTTP interface takes mutual TLS: an operator's
        # certificate of the installation's control CA.
        client = subprocess.run(
            [str(self.wasmbed), "certs", "issue-client", "--dir", str(self.workdir / "pki"),
             "--name", "robot"],
            capture_output=True,
            text=True,
            check=False,
        )
        if client.returncode != 0:
            raise Failure(f"`wasmbed certs issue-client` failed ({client.returncode}):\n{client.stderr}")
        pki = self.workdir / "pki"
        self.tls = ssl.create_default_context(cafile=str(pki / "gateway-ca.pem"))
        self.tls.load_cert_chain(str(pki / "robot.pem"), str(pki / "robot-key.pem"))

        self.device_port, self.http_port = _free_ports(2)
        self.gateway_log = self.workdir / "gateway.log"
        command = [
            str(self.wasmbed),
            "gateway",
            "--pki",
            str(self.workdir / "pki"),
            "--db",
            str(self.workdir / "gateway.db"),
            "--listen",
            f"127.0.0.1:{self.device_port}",
            "--http",
            f"127.0.0.1:{self.http_port}",
            "--open-pairing",
            "--heartbeat-interval",
            "1s",
        ]
        logger.info("$ " + " ".join(command))
        with self.gateway_log.open("wb") as log:
            self.gateway = subprocess.Popen(
                command,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (see _die_with_parent)
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.gateway.poll() is not None:
                self._fail(f"the gateway exited with code {self.gateway.returncode} at start")
            try:
                self._http("GET", "/healthz", raw=True)
                break
            except (OSError, Failure):
                if time.monotonic() > deadline:
                    self._fail(f"the gateway did not answer on port {self.http_port} in {START_TIMEOUT:.0f} s")
                time.sleep(0.1)
        pairing = self._http("GET", "/v1/pairing")
        # --open-pairing opens a window that closes by itself.
        if pairing.get("open") is not True or not isinstance(pairing.get("closes_at_ms"), int):
            self._fail(f"a pairing window should be open, the gateway says {pairing}")
        logger.info(f"gateway: devices on 127.0.0.1:{self.device_port}, HTTPS on 127.0.0.1:{self.http_port}")

    def start_devices(self, count: int = 1, backend: str | None = None) -> list[str]:
        """Starts `wasmbed emulator run` with `count` devices of the
        firmware on `backend` (`qemu` or `renode`; default: the Robot variable
        `${BACKEND}`, else `qemu`) against the gateway, and waits until the
        emulator manager has started them all. Returns the device names
        (`qemu-0`, `qemu-1`, ...).

        With `renode` and no `renode` on PATH, the test (or, in a suite
        setup, the whole suite) is skipped.
        """
        if self.gateway is None or self.workdir is None:
            raise Failure("Start Gateway first")
        if self.emulator is not None:
            raise Failure("the devices are already running")
        if backend is None:
            backend = str(BuiltIn().get_variable_value("${BACKEND}", "qemu"))
        backend = backend.lower()
        if backend not in ("qemu", "renode"):
            raise Failure(f"unknown backend {backend!r}: use qemu or renode")
        if backend == "renode" and shutil.which("renode") is None:
            raise SkipExecution("renode not on PATH: skipping")
        if not self.firmware.is_file():
            raise Failure(
                f"firmware {self.firmware} does not exist: build it with `cargo xtask firmware` or set WASMBED_FIRMWARE"
            )
        count = int(count)
        if count < 1:
            raise Failure("count must be at least 1")

        self.devices = [f"{backend}-{i}" for i in range(count)]
        with self.changed:
            self.consoles = {name: [] for name in self.devices}
            self.consoles["#"] = []
            self.emulator_done = False
        self.emulator_log = self.workdir / "emulator.log"
        command = [
            str(self.wasmbed),
            "emulator",
            "run",
            "--firmware",
            str(self.firmware),
            "--devices",
            str(count),
            "--state-dir",
            str(self.workdir / "devices"),
            "--certs",
            str(self.workdir / "pki"),
            "--gateway",
            f"127.0.0.1:{self.device_port}",
            "--backend",
            backend,
            "--board",
            str(BuiltIn().get_variable_value("${BOARD}", "mps2-an385")),
            "--name-prefix",
            f"{backend}-",
        ]
        logger.info("$ " + " ".join(command))
        with self.emulator_log.open("wb") as log:
            self.emulator = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (see _die_with_parent)
            )
        assert self.emulator.stdout is not None
        self.reader = threading.Thread(
            target=self._read_emulator,
            args=(self.emulator.stdout, self.workdir / "console.log"),
            name="wasmbed-emulator-reader",
            daemon=True,
        )
        self.reader.start()

        deadline = time.monotonic() + START_TIMEOUT
        with self.changed:
            while True:
                started = {m.group(1) for line in self.consoles["#"] if (m := STARTED_LINE.match(line))}
                if started >= set(self.devices):
                    break
                if self.emulator_done:
                    self._fail("`wasmbed emulator run` exited before starting every device")
                left = deadline - time.monotonic()
                if left <= 0:
                    self._fail(f"the devices did not start in {START_TIMEOUT:.0f} s")
                self.changed.wait(left)
        logger.info(f"started {', '.join(self.devices)} on {backend}")
        return list(self.devices)

    def console_mark(self, device: str) -> int:
        """The number of console lines `device` has printed so far: pass it
        as `since` to `Wait For Console` to wait for a line printed after
        now."""
        with self.changed:
            return len(self._console(device))

    def wait_for_console(self, device: str, pattern: str, timeout: str = "60s", since: int = 0) -> str:
        """Waits until a console line of `device` matches `pattern` and
        returns that line.

        `pattern` is a substring of the line, or with a `regexp:` prefix a
        Python regular expression searched in it. Only lines from number
        `since` on count (see `Console Mark`); by default every line since
        boot. Fails after `timeout`, or when the emulator exits first, with
        the device's last 20 lines.
        """
        regexp = re.compile(pattern[len("regexp:") :]) if pattern.startswith("regexp:") else None

        def matches(line: str) -> bool:
            return regexp.search(line) is not None if regexp else pattern in line

        seconds = timestr_to_secs(timeout)
        deadline = time.monotonic() + seconds
        checked = int(since)
        with self.changed:
            lines = self._console(device)
            while True:
                for line in lines[checked:]:
                    if matches(line):
                        logger.info(f"[{device}] {line}")
                        return line
                checked = max(checked, len(lines))
                if self.emulator_done:
                    why = "the emulator exited"
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    why = f"timed out after {seconds:g} s"
                    break
                self.changed.wait(left)
            tail = "\n".join(lines[-TAIL_LINES:]) or "(no lines)"
        self._fail(f"{device}: no console line matching {pattern!r} ({why}); its last lines:\n{tail}")

    def enrolled_device_id(self, device: str, timeout: str = "60s") -> str:
        """Waits until `device` has enrolled and returns the id the gateway
        gave it, e.g. `39b95128-3f59-2c46-a321-59e091a78d73`."""
        line = self.wait_for_console(device, "regexp:" + ENROLLED.pattern, timeout)
        match = ENROLLED.search(line)
        assert match is not None
        return match.group(1)

    def deploy_module(self, device_id: str, module_name: str, fuel: int, args_json: str = "[]") -> int:
        """Deploys the module `module_name` (`NAME.wasm` from the
        applications directory) to the device `device_id`, with entry `run`,
        one page of memory, `fuel` and the arguments `args_json` (a JSON list
        like `[{"i32": 10000}]`), and returns the deployment id."""
        name = module_name if module_name.endswith(".wasm") else f"{module_name}.wasm"
        path = self.apps / name
        if not path.is_file():
            raise Failure(f"{path} does not exist: build the applications with `cargo xtask apps`")
        args = json.loads(args_json) if isinstance(args_json, str) else args_json
        if not isinstance(args, list):
            raise Failure(f"args_json must be a JSON list, not {args_json!r}")
        body = {
            "application_id": 1,
            "module": base64.b64encode(path.read_bytes()).decode("ascii"),
            "devices": [device_id],
            "limits": {"fuel": int(fuel), "memory_pages": 1, "entry": "run", "args": args},
        }
        created = self._http("POST", "/v1/deployments", body)
        if not isinstance(created, list) or len(created) != 1:
            self._fail(f"POST /v1/deployments answered {created!r}, not one deployment")
        deployment = int(created[0]["id"])
        self.deployments.append(deployment)
        logger.info(f"deployment {deployment}: {name} ({path.stat().st_size} B) to {device_id}, args {args}")
        return deployment

    def result_of_deployment(self, deployment_id: int, timeout: str = "60s") -> dict[str, Any]:
        """Waits for the first execution result of `deployment_id` and
        returns it as the gateway shows it (`returned`, `trap`, `logs`,
        `fuel_used`, ...). Fails after `timeout`, or at once when the
        deployment failed."""
        deployment_id = int(deployment_id)
        seconds = timestr_to_secs(timeout)
        deadline = time.monotonic() + seconds
        while True:
            results = self._http("GET", f"/v1/results?deployment={deployment_id}")
            found = [r for r in results if r.get("deployment") == deployment_id]
            if found:
                result: dict[str, Any] = found[-1]  # newest first: the last is the first run
                logger.info(f"result of deployment {deployment_id}: {json.dumps(result)}")
                return result
            status = self._http("GET", f"/v1/deployments/{deployment_id}")
            if status.get("state") == "failed":
                self._fail(f"deployment {deployment_id} failed: {status.get('reason')}")
            if time.monotonic() > deadline:
                self._fail(
                    f"no result for deployment {deployment_id} in {seconds:g} s; "
                    f"it is {status.get('state')}: {json.dumps(status)}"
                )
            time.sleep(0.2)

    def remove_deployments(self, timeout: str = "30s") -> None:
        """Removes every deployment made with `Deploy Module` since the last
        call, and waits until the device has removed them, which frees its
        module slots (the firmware has two). A deployment that failed, and
        so holds no slot, counts as removed."""
        removed = list(self.deployments)
        self.deployments.clear()
        pending = list(removed)
        for deployment in pending:
            self._http("DELETE", f"/v1/deployments/{deployment}")
        seconds = timestr_to_secs(timeout)
        deadline = time.monotonic() + seconds
        while pending:
            states = {d: self._http("GET", f"/v1/deployments/{d}").get("state") for d in pending}
            pending = [d for d, state in states.items() if state not in ("removed", "failed")]
            if pending and time.monotonic() > deadline:
                left = ", ".join(f"{d} ({states[d]})" for d in pending)
                self._fail(f"deployments not removed in {seconds:g} s: {left}")
            time.sleep(0.2 if pending else 0)
        if removed:
            logger.info(f"removed deployments {', '.join(map(str, removed))}")

    def should_have_returned(self, result: dict[str, Any], expected_json: str) -> None:
        """Fails unless `result` returned exactly the values `expected_json`,
        e.g. `[{"i32": 1229}, {"i32": 9973}]`."""
        expected = json.loads(expected_json)
        if result.get("trap") is not None:
            raise AssertionError(f"expected {expected}, but it trapped {result['trap']}: {json.dumps(result)}")
        if result.get("returned") != expected:
            raise AssertionError(f"expected {expected}, but it returned {result.get('returned')}: {json.dumps(result)}")

    def should_have_trapped(self, result: dict[str, Any], trap: str) -> None:
        """Fails unless `result` is the trap `trap`, e.g. `OutOfFuel`."""
        if result.get("trap") != trap:
            what = f"trapped {result['trap']}" if result.get("trap") else f"returned {result.get('returned')}"
            raise AssertionError(f"expected trap {trap}, but it {what}: {json.dumps(result)}")

    def stop_everything(self) -> None:
        """Stops the emulator (SIGINT: it stops every device), then the
        gateway (SIGINT), killing either one that has not exited after 10 s.
        When the suite failed, logs the gateway's log, the emulator's log
        and every console, and keeps the working directory; else deletes
        it."""
        failed = BuiltIn().get_variable_value("${SUITE STATUS}", "PASS") == "FAIL"
        self._stop()
        if self.workdir is None:
            return
        if failed:
            self._dump_logs(whole=True)
            logger.warn(f"the suite failed: kept its working directory {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None

    # ---------------------------------------------------------------- internals

    def _env(self) -> dict[str, str]:
        # Plain log lines, without colours, in the log files.
        return {**os.environ, "NO_COLOR": "1"}

    def _register_cleanup(self) -> None:
        if not self._atexit_registered:
            atexit.register(self._stop)
            self._atexit_registered = True

    def _console(self, device: str) -> list[str]:
        """The console of `device`; the caller holds `changed`."""
        if device not in self.consoles:
            known = ", ".join(self.devices) or "none (Start Devices first)"
            raise Failure(f"no device {device!r}; the devices are {known}")
        return self.consoles[device]

    def _read_emulator(self, stdout: IO[str], copy: Path) -> None:
        """The reader thread: files every line the emulator prints under its
        device, keeps a copy in `console.log`, and wakes up the waiters."""
        with copy.open("w", encoding="utf-8") as out:
            for raw in stdout:
                line = raw.rstrip("\r\n")
                out.write(line + "\n")
                out.flush()
                match = DEVICE_LINE.match(line)
                with self.changed:
                    if match and match.group(1) in self.consoles:
                        self.consoles[match.group(1)].append(match.group(2))
                    else:
                        self.consoles.setdefault("#", []).append(line)
                    self.changed.notify_all()
        with self.changed:
            self.emulator_done = True
            self.changed.notify_all()

    def _http(self, method: str, path: str, body: Any = None, raw: bool = False) -> Any:
        """Calls the gateway's HTTP interface and returns the decoded JSON
        answer (the text with `raw`). A status other than 2xx fails."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(
            f"https://127.0.0.1:{self.http_port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.tls) as response:
                text = response.read().decode("utf-8")
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", errors="replace")
            raise Failure(f"{method} {path}: HTTP {error.code}: {detail}") from None
        return text if raw else json.loads(text)

    def _fail(self, message: str) -> NoReturn:
        """Logs the tails of the gateway's and the emulator's logs, then
        fails with `message`."""
        self._dump_logs(whole=False)
        raise Failure(message)

    def _dump_logs(self, whole: bool) -> None:
        lines = 1_000_000 if whole else 40
        for name, path in (("gateway log", self.gateway_log), ("emulator log", self.emulator_log)):
            if path is not None:
                logger.info(f"{name} ({path}):\n{_tail(path, lines)}")
        if whole:
            with self.changed:
                consoles = {name: list(lines) for name, lines in self.consoles.items()}
            for name, console in consoles.items():
                title = "emulator manager" if name == "#" else f"console of {name}"
                logger.info(f"{title}:\n" + "\n".join(console))

    def _stop(self) -> None:
        """Stops the emulator, then the gateway: SIGINT, and SIGKILL after
        STOP_GRACE seconds. Safe to call twice (Stop Everything and atexit)."""
        if self.emulator is not None:
            code = _stop_process(self.emulator, "emulator")
            if self.reader is not None:
                self.reader.join(STOP_GRACE)
            if self.emulator.stdout is not None:
                self.emulator.stdout.close()
            # Ctrl-C makes `wasmbed emulator run` exit 0; 1 means a device
            # stopped on its own before.
            if code not in (0, None):
                logger.warn(f"`wasmbed emulator run` exited with code {code}")
            self.emulator = None
        if self.gateway is not None:
            _stop_process(self.gateway, "gateway")
            self.gateway = None


def _stop_process(process: subprocess.Popen[Any], name: str) -> int | None:
    """SIGINT to `process`, then SIGKILL to its whole process group if it
    has not exited after STOP_GRACE seconds. Returns its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            logger.warn(f"the {name} did not stop in {STOP_GRACE:.0f} s after SIGINT: killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode
