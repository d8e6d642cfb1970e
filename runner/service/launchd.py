"""`tslake launchd install`: run tslake on a timer (or as a service) on macOS with launchd,
and the same as systemd units on Linux hosts.

Plists are built as dicts and written with plistlib, then read back to validate. The
Postgres password is never written into a unit: units point PGPASSFILE at a 0600 file
under the data root, which the operator fills (see docs/RUNBOOK.md)."""

from __future__ import annotations

import logging
import os
import platform
import plistlib
import pwd
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from runner.config import PROJECT_ROOT
from runner.errors import ConfigError

log = logging.getLogger("tslake.launchd")

LABELS = {"timer": "com.tslake.tick", "service": "com.tslake.replicator"}
DEFAULT_USER = "_farmdashboard"
DEFAULT_DATA_ROOT = Path("/Users/Shared/FarmDashboard")
DEFAULT_HTTP_PORT = 9187
LAUNCH_DAEMONS = Path("/Library/LaunchDaemons")
# Settings passed through to the job when set in the installing shell (never PGPASSWORD).
_PASSED_THROUGH = ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGSSLMODE", "TSLAKE_HOT_PATH",
                   "TSLAKE_COLD_PATH", "TSLAKE_TMP_PATH", "TSLAKE_REPLICATION_LAG_SECONDS",
                   "TSLAKE_HOT_RETENTION_DAYS", "TSLAKE_SHARDS", "TSLAKE_COMPACT_MIN_FILES",
                   "TSLAKE_MEMORY_LIMIT", "TSLAKE_THREADS")


@dataclass(frozen=True)
class JobSpec:
    """Everything a unit file needs; rendering is a pure function of this."""

    mode: str                # "timer": `tslake tick` every interval; "service": `tslake run`
    user: str
    data_root: Path
    project_root: Path
    interval_seconds: int
    http_port: int
    environment: dict[str, str]

    @property
    def label(self) -> str:
        return LABELS[self.mode]

    @property
    def tslake(self) -> str:
        return str(self.project_root / ".venv/bin/tslake")

    @property
    def log_path(self) -> Path:
        return self.data_root / "logs" / f"tslake-{self.mode}.log"

    @property
    def arguments(self) -> list[str]:
        if self.mode == "timer":
            return [self.tslake, "tick"]
        return [self.tslake, "run", "--interval", str(self.interval_seconds),
                "--http-port", str(self.http_port)]


def job_environment(spec_data_root: Path, env: Mapping[str, str]) -> dict[str, str]:
    """The job's environment: the data root, pass-through settings, and where the password
    file is. A password found in the installing shell is refused, not written."""
    if env.get("PGPASSWORD"):
        log.warning("PGPASSWORD is set but is not written into the unit: put the password "
                    "in %s instead", spec_data_root / "secrets/pgpass")
    chosen = {"TSLAKE_DATA_ROOT": str(spec_data_root), "DO_NOT_TRACK": "1",
              "PGPASSFILE": str(spec_data_root / "secrets/pgpass"),
              **{name: env[name] for name in _PASSED_THROUGH if env.get(name)}}
    if env.get("TSLAKE_PG_DSN"):
        params = conninfo_to_dict(env["TSLAKE_PG_DSN"])
        if params.pop("password", None) is not None:
            log.warning("the password in TSLAKE_PG_DSN is not written into the unit: put it "
                        "in %s instead", spec_data_root / "secrets/pgpass")
        chosen["TSLAKE_PG_DSN"] = make_conninfo(**{k: str(v) for k, v in params.items()})
    return chosen


def render_plist(spec: JobSpec) -> bytes:
    job: dict[str, Any] = {
        "Label": spec.label,
        "ProgramArguments": spec.arguments,
        "WorkingDirectory": str(spec.project_root),
        "UserName": spec.user,
        "EnvironmentVariables": spec.environment,
        "StandardOutPath": str(spec.log_path),
        "StandardErrorPath": str(spec.log_path),
        "RunAtLoad": True,
        # A background job: low CPU and I/O priority, so the controller stays responsive.
        "ProcessType": "Background",
        "Nice": 10,
        "LowPriorityIO": True,
    }
    if spec.mode == "timer":
        job["StartInterval"] = spec.interval_seconds
    else:
        job["KeepAlive"] = True
        job["ThrottleInterval"] = 30
        # SIGTERM lets the tick in progress finish; SIGKILL only after this long.
        job["ExitTimeOut"] = 300
    rendered = plistlib.dumps(job, sort_keys=True)
    if plistlib.loads(rendered) != job:
        raise ConfigError(f"plist for {spec.label} does not read back as written")
    return rendered


def render_systemd(spec: JobSpec) -> dict[str, str]:
    """systemd units for Linux hosts: a oneshot service plus a timer, or a long-running
    service."""
    name = "tslake-tick" if spec.mode == "timer" else "tslake"
    # A service restarts after a crash and gets time to finish its tick on stop.
    keep_alive = ("" if spec.mode == "timer" else
                  "Restart=always\nRestartSec=30\nKillSignal=SIGTERM\nTimeoutStopSec=300\n")
    environment = "\n".join(f'Environment="{key}={value}"'
                            for key, value in sorted(spec.environment.items()))
    service = f"""[Unit]
Description=tslake {"tick" if spec.mode == "timer" else "replication service"}
After=network-online.target

[Service]
Type={"oneshot" if spec.mode == "timer" else "simple"}
User={spec.user}
WorkingDirectory={spec.project_root}
ExecStart={" ".join(spec.arguments)}
{environment}
Nice=10
IOSchedulingClass=idle
{keep_alive}
[Install]
WantedBy=multi-user.target
"""
    units = {f"{name}.service": service}
    if spec.mode == "timer":
        units[f"{name}.timer"] = f"""[Unit]
Description=Run tslake tick every {spec.interval_seconds} s

[Timer]
OnBootSec={spec.interval_seconds}
OnUnitActiveSec={spec.interval_seconds}
AccuracySec=1

[Install]
WantedBy=timers.target
"""
    return units


def install(spec: JobSpec, *, dry_run: bool, target_dir: Path | None = None) -> list[str]:
    """Write (and on macOS load) the unit files; returns the lines to tell the operator."""
    on_macos = platform.system() == "Darwin"
    plist = render_plist(spec)
    if dry_run:
        return [plist.decode()]
    directory = target_dir or (LAUNCH_DAEMONS if on_macos else spec.data_root / "launchd")
    directory.mkdir(parents=True, exist_ok=True)
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    (spec.data_root / "secrets").mkdir(parents=True, exist_ok=True, mode=0o700)
    owner = _service_user(spec.user)
    if owner is not None and os.geteuid() == 0:  # the job, not root, reads and writes these
        for path in (spec.data_root / "secrets", spec.log_path.parent):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    plist_path = directory / f"{spec.label}.plist"
    _write(plist_path, plist)
    written = [plist_path]
    for name, text in render_systemd(spec).items():
        if not on_macos:
            _write(directory / name, text.encode())
            written.append(directory / name)
    lines = [f"wrote {path}" for path in written]
    if owner is None:
        lines.append(f"warning: the service user {spec.user!r} does not exist: create it "
                     "(macOS: sudo sysadminctl -addUser; Linux: sudo useradd --system "
                     f"{spec.user}) or pass --user, then install again")
    if on_macos and target_dir is None:
        domain = "system"
        subprocess.run(["launchctl", "bootout", f"{domain}/{spec.label}"], capture_output=True)
        subprocess.run(["launchctl", "bootstrap", domain, str(plist_path)], check=True)
        lines.append(f"loaded {spec.label} (launchctl print {domain}/{spec.label})")
    elif on_macos:
        lines.append(f"load it with: sudo launchctl bootstrap system {plist_path}")
    else:
        units = " ".join(str(path) for path in written if path.suffix in (".service", ".timer"))
        enable = next((path.name for path in written if path.suffix == ".timer"), None) or \
            next(path.name for path in written if path.suffix == ".service")
        lines.append(f"not macOS: load the systemd units with: sudo cp {units} "
                     "/etc/systemd/system/ && sudo systemctl daemon-reload && "
                     f"sudo systemctl enable --now {enable}")
    if shutil.which("plutil") and on_macos:
        subprocess.run(["plutil", "-lint", str(plist_path)], check=True, capture_output=True)
    return lines


def _service_user(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def spec_from_options(mode: str, user: str | None, data_root: Path | None,
                      interval_seconds: float, http_port: int,
                      env: Mapping[str, str] | None = None) -> JobSpec:
    env = os.environ if env is None else env
    root = (data_root or DEFAULT_DATA_ROOT).absolute()
    return JobSpec(mode=mode, user=user or DEFAULT_USER, data_root=root,
                   project_root=PROJECT_ROOT, interval_seconds=max(1, round(interval_seconds)),
                   http_port=http_port, environment=job_environment(root, env))


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_examples(directory: Path) -> list[Path]:
    """The reference units committed under launchd/, for the production defaults: a
    checkout at /Users/Shared/FarmDashboard/tslake, service user _farmdashboard."""
    written = []
    for mode in ("timer", "service"):
        spec = JobSpec(mode=mode, user=DEFAULT_USER, data_root=DEFAULT_DATA_ROOT,
                       project_root=DEFAULT_DATA_ROOT / "tslake", interval_seconds=60,
                       http_port=DEFAULT_HTTP_PORT,
                       environment=job_environment(DEFAULT_DATA_ROOT, {}))
        files = {f"{spec.label}.plist": render_plist(spec),
                 **{name: text.encode() for name, text in render_systemd(spec).items()}}
        for name, data in files.items():
            _write(directory / name, data)
            written.append(directory / name)
    return written


if __name__ == "__main__":
    for path in write_examples(PROJECT_ROOT / "launchd"):
        print(f"wrote {path}")
