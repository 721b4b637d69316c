"""The gateway's systemd unit and sysusers.d snippet, as text (pure: no files, no commands).

Every directive is here so that ``systemd-analyze verify`` can check what is written, and
so a packager can take the files as they are. Why some hardening is *not* there:

* ``PrivateDevices=``, ``ProtectClock=``, ``DevicePolicy=``: each hides or closes ``/dev``
  (``ProtectClock=`` by implying ``DeviceAllow=char-rtc``), and the gateway needs the Pi's
  ``/dev/gpiochip*`` and the boards' ``/dev/ttyUSB*``/``ttyACM*``.
* ``MemoryDenyWriteExecute=``: libffi's closures (cffi, ctypes) need writable code pages.
* ``AF_NETLINK``: nothing in the gateway lists interfaces; glibc's resolver does without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

UNIT_NAME: Final = "simpul-gateway.service"
USER: Final = "simpul"
STATE_DIR: Final = "/var/lib/simpul"
CONFIG_DIR: Final = "/etc/simpul"
CONFIG_FILE: Final = f"{CONFIG_DIR}/gateway.toml"
#: Groups the Pi gives access to GPIO (gpiochip, gpiomem) and to serial ports.
SUPPLEMENTARY_GROUPS: Final = ("gpio", "dialout")
#: systemd restarts the gateway if it sends no WATCHDOG=1 for this long.
WATCHDOG_SEC: Final = 30


@dataclass(frozen=True)
class UnitOptions:
    """What varies between installations."""

    #: Absolute path of the installed ``simpul`` command.
    exec_path: str
    user: str = USER
    watchdog_sec: int = WATCHDOG_SEC
    #: ``yes`` hides /home and /root; ``read-only`` when ``simpul`` itself lives there.
    protect_home: str = "yes"


def unit_text(options: UnitOptions) -> str:
    """The ``simpul-gateway.service`` unit."""
    if not options.exec_path.startswith("/"):
        raise ValueError(f"ExecStart needs an absolute path, got {options.exec_path!r}")
    if any(c.isspace() for c in options.exec_path):
        raise ValueError(f"the simpul command's path has a space: {options.exec_path!r}")
    groups = " ".join(SUPPLEMENTARY_GROUPS)
    return f"""\
# Written by `simpul gateway install`; `simpul gateway uninstall` removes it.
[Unit]
Description=simpul gateway: sensor boards over CoAP, signed batches upstream
After=network.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={options.exec_path} gateway run --config {CONFIG_FILE} --state-dir {STATE_DIR}
WatchdogSec={options.watchdog_sec}
Restart=on-failure
RestartSec=2
# The writer commits what it holds and each uplink finishes its round.
TimeoutStopSec=30
User={options.user}
Group={options.user}
SupplementaryGroups={groups}
StateDirectory=simpul
StateDirectoryMode=0750
ConfigurationDirectory=simpul
ConfigurationDirectoryMode=0755
UMask=0027
ProtectSystem=strict
ReadWritePaths={STATE_DIR}
ProtectHome={options.protect_home}
PrivateTmp=yes
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectHostname=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
"""


def sysusers_text(user: str = USER) -> str:
    """A sysusers.d(5) snippet: the gateway's system user, and the Pi's gpio group if absent."""
    return f"""\
# Written by `simpul gateway install`: the user the gateway runs as.
u {user} - "simpul gateway" {STATE_DIR} /usr/sbin/nologin
g gpio -
"""


def config_text() -> str:
    """The first ``gateway.toml``: the paths the unit uses; the rest is gateway/config.py's."""
    return f"""\
# simpul gateway configuration; every field is documented in gateway/config.py.
[gateway]
state_dir = "{STATE_DIR}"
# gateway_id = "gw-takengon-1"
# site = "takengon"
"""


__all__ = [
    "CONFIG_FILE",
    "STATE_DIR",
    "UNIT_NAME",
    "UnitOptions",
    "config_text",
    "sysusers_text",
    "unit_text",
]
