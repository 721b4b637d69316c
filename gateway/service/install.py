"""``simpul gateway install`` and ``uninstall``: the gateway as a systemd service.

``install`` writes the unit (:mod:`.unit`) to ``/etc/systemd/system``, a sysusers.d
snippet for the ``simpul`` system user, and a first ``/etc/simpul/gateway.toml`` if there
is none (an existing one is never touched); then, as root on the live system, creates the
user (``systemd-sysusers``, else ``useradd --system``), and runs ``systemctl daemon-reload``
and ``enable --now`` (``--no-start``: enable only). Run again, it rewrites only what
differs. ``--root DIR`` writes the same files under DIR and runs nothing (a staging root
for packages and tests); ``--dry-run`` only says what it would do.

``uninstall`` stops and disables the service and removes the unit and the snippet. The
state directory (``/var/lib/simpul``: the store, keys, the outbox) and ``/etc/simpul`` stay
unless ``--purge``; the system user stays (Debian's practice: its id may own files).

Each step is a plain value (:class:`Step`) made before anything happens, so the plan can be
shown, tested and run the same way.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from gateway.service import unit

EXIT_OK: Final = 0
EXIT_USAGE: Final = 2
UNIT_DIR: Final = "etc/systemd/system"
SYSUSERS_FILE: Final = "etc/sysusers.d/simpul.conf"


@dataclass(frozen=True)
class Step:
    """One thing to do: write ``text`` to ``path``, remove ``path``, or run ``command``."""

    path: Path | None = None
    text: str | None = None
    remove: bool = False
    keep_if_present: bool = False
    command: tuple[str, ...] = ()
    #: Whether a failing command stops the rest (stopping a unit that is not there does not).
    check: bool = True

    def describe(self) -> str:
        if self.command:
            return "run " + " ".join(self.command)
        if self.remove:
            return f"remove {self.path}"
        return f"write {self.path}" + (" (if absent)" if self.keep_if_present else "")


def add_commands(commands: Any) -> None:
    """Add ``install`` and ``uninstall`` to the ``gateway`` group's subparsers."""
    install = commands.add_parser(
        "install",
        help="install the gateway as a systemd service (unit, user, config)",
        description="Write the systemd unit, the sysusers.d snippet and a first config;"
        " as root, create the user, reload systemd and enable --now the service.",
    )
    _common(install)
    install.add_argument(
        "--no-start", action="store_true", help="enable the service but do not start it"
    )
    install.add_argument(
        "--exec",
        dest="exec_path",
        metavar="PATH",
        help="the simpul command ExecStart runs (default: the one running now)",
    )
    install.add_argument(
        "--watchdog-sec",
        type=int,
        default=unit.WATCHDOG_SEC,
        metavar="S",
        help=f"restart the gateway if it is unhealthy this long (default {unit.WATCHDOG_SEC})",
    )
    install.set_defaults(handler=install_command)
    uninstall = commands.add_parser(
        "uninstall",
        help="stop, disable and remove the gateway's systemd service",
        description="Stop and disable the service, remove its unit. The state directory"
        f" ({unit.STATE_DIR}) and {unit.CONFIG_DIR} stay unless --purge.",
    )
    _common(uninstall)
    uninstall.add_argument(
        "--purge",
        action="store_true",
        help=f"also delete {unit.STATE_DIR} (the store, keys, undelivered data) and"
        f" {unit.CONFIG_DIR}",
    )
    uninstall.set_defaults(handler=uninstall_command)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        type=Path,
        default=Path("/"),
        metavar="DIR",
        help="write into this staging root and run nothing (default /: the live system)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the steps, do nothing")


def installed_simpul() -> str | None:
    """Absolute path of the ``simpul`` command beside this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "simpul"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside.absolute())
    found = shutil.which("simpul")
    return str(Path(found).absolute()) if found else None


def install_plan(
    root: Path,
    options: unit.UnitOptions,
    *,
    start: bool,
    has_sysusers: bool = True,
) -> list[Step]:
    """Everything ``install`` does, in order. Commands only for the live system (``/``)."""
    steps = [
        Step(root / UNIT_DIR / unit.UNIT_NAME, unit.unit_text(options)),
        Step(root / SYSUSERS_FILE, unit.sysusers_text(options.user)),
        Step(root / unit.CONFIG_FILE.lstrip("/"), unit.config_text(), keep_if_present=True),
    ]
    if root == Path("/"):
        if has_sysusers:
            steps.append(Step(command=("systemd-sysusers", f"/{SYSUSERS_FILE}")))
        else:
            steps.append(Step(command=_useradd(options.user)))
        steps.append(Step(command=("systemctl", "daemon-reload")))
        enable = ("systemctl", "enable", *(("--now",) if start else ()), unit.UNIT_NAME)
        steps.append(Step(command=enable))
    return steps


def _useradd(user: str) -> tuple[str, ...]:
    # Only reached without systemd-sysusers; an existing user makes it exit 9, which is fine.
    return (
        "sh",
        "-c",
        f"id -u {user} >/dev/null 2>&1 || useradd --system --user-group --home-dir"
        f" {unit.STATE_DIR} --no-create-home --shell /usr/sbin/nologin {user}",
    )


def uninstall_plan(root: Path, *, purge: bool) -> list[Step]:
    """Everything ``uninstall`` does, in order."""
    steps: list[Step] = []
    live = root == Path("/")
    if live:
        steps.append(Step(command=("systemctl", "disable", "--now", unit.UNIT_NAME), check=False))
    steps += [
        Step(root / UNIT_DIR / unit.UNIT_NAME, remove=True),
        Step(root / SYSUSERS_FILE, remove=True),
    ]
    if purge:
        steps += [
            Step(root / unit.STATE_DIR.lstrip("/"), remove=True),
            Step(root / unit.CONFIG_DIR.lstrip("/"), remove=True),
        ]
    if live:
        steps.append(Step(command=("systemctl", "daemon-reload")))
    return steps


def apply(steps: Sequence[Step], run: Callable[[Sequence[str]], int], out: Any) -> int:
    """Carry out ``steps``, one line each on ``out``; stops at the first command that fails."""
    for step in steps:
        if step.command:
            print(step.describe(), file=out)
            code = run(step.command)
            if code != 0 and step.check:
                failed = f"{step.command[0]} exited with {code}"
                print(f"simpul gateway: error: {failed}", file=sys.stderr)
                return 1
            continue
        assert step.path is not None
        if step.remove:
            if step.path.is_dir() and not step.path.is_symlink():
                shutil.rmtree(step.path)
                print(f"removed {step.path}/", file=out)
            elif step.path.exists() or step.path.is_symlink():
                step.path.unlink()
                print(f"removed {step.path}", file=out)
            continue
        assert step.text is not None
        if step.path.exists() and (step.keep_if_present or step.path.read_text() == step.text):
            print(f"unchanged {step.path}", file=out)
            continue
        step.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = step.path.with_name(f".{step.path.name}.tmp")
        temporary.write_text(step.text)
        temporary.chmod(0o644)
        os.replace(temporary, step.path)
        print(f"wrote {step.path}", file=out)
    return 0


def _run(command: Sequence[str]) -> int:
    import subprocess

    return subprocess.run(list(command), check=False).returncode


def install_command(args: argparse.Namespace) -> int:
    exec_path = args.exec_path or installed_simpul()
    if exec_path is None:
        print("simpul gateway: error: no simpul command found; give --exec PATH", file=sys.stderr)
        return EXIT_USAGE
    exec_path = str(Path(exec_path).absolute())
    protect_home = "yes"
    if exec_path.startswith(("/home/", "/root/")):
        # ProtectHome=yes would hide the command itself (a pipx or venv install in a home).
        protect_home = "read-only"
        print(f"note: {exec_path} is in a home directory: ProtectHome=read-only", file=sys.stderr)
    try:
        options = unit.UnitOptions(
            exec_path, watchdog_sec=args.watchdog_sec, protect_home=protect_home
        )
        steps = install_plan(
            args.root,
            options,
            start=not args.no_start,
            has_sysusers=shutil.which("systemd-sysusers") is not None,
        )
    except ValueError as exc:
        print(f"simpul gateway: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return _carry_out(args, steps)


def uninstall_command(args: argparse.Namespace) -> int:
    steps = uninstall_plan(args.root, purge=args.purge)
    code = _carry_out(args, steps)
    if code == 0 and not args.purge and not args.dry_run:
        print(
            f"kept {args.root / unit.STATE_DIR.lstrip('/')} and"
            f" {args.root / unit.CONFIG_DIR.lstrip('/')} (--purge deletes them)"
        )
    return code


def _carry_out(args: argparse.Namespace, steps: Sequence[Step]) -> int:
    if args.dry_run:
        for step in steps:
            print(step.describe())
        return EXIT_OK
    live = any(step.command for step in steps)
    if live and os.geteuid() != 0:
        print(
            "simpul gateway: error: installing a system service needs root"
            " (sudo), or --root DIR to write into a staging root",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        return apply(steps, _run, sys.stdout)
    except OSError as exc:
        print(f"simpul gateway: error: {exc}", file=sys.stderr)
        return 1


__all__ = ["Step", "add_commands", "apply", "install_plan", "installed_simpul", "uninstall_plan"]
