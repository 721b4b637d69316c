"""The board contract: what the firmware may ask of the board it is handed, as code.

``app.main(board)`` runs on three boards: the chip's (``firmware/board.py``), the CPython
engine's (``hw/engines/cpython/board.py``) and the MicroPython VM engine's
(``hw/engines/mpy/rom/vmboard.py``). Each must offer exactly this. The firmware cannot import
``typing`` at run time, so the contract lives here, host-side, as ``Protocol`` classes; mypy
holds the CPython board to it, and ``shape_mismatches`` checks any board class from its
source (names, parameters, ``async``) without importing it, which is how the chip's and the
VM's boards are checked (``tests/contract/``). What the methods *do* is proved by the contract
suite, run over both engines and a real board (``tests/contract/test_board_contract.py``).
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

# What ``reset_cause()`` may say (the chip says "unknown" for a cause it has no name for).
RESET_CAUSE_NAMES = ("power_on", "hard", "wdt", "deepsleep", "soft", "unknown")


class Flash(Protocol):
    """``board.flash``: the board's filesystem, by absolute path."""

    def open(self, path: str, mode: str) -> Any:
        """A file object (``read``, ``write``, ``seek``, ``close``, a context manager)."""
        ...

    def remove(self, path: str) -> None: ...

    def rename(self, old: str, new: str) -> None: ...

    def size(self, path: str) -> int:
        """Bytes in the file, or -1 if there is none."""
        ...

    def listdir(self, path: str) -> list[str]: ...

    def mkdir(self, path: str) -> None:
        """Make the directory unless it exists."""
        ...


class DatagramLink(Protocol):
    """What ``board.udp(host, port)`` returns: Wi-Fi to the gateway."""

    def send(self, data: bytes) -> None: ...

    async def recv(self, timeout_ms: int) -> bytes | None:
        """The next datagram, or None after ``timeout_ms``."""
        ...

    def close(self) -> None: ...


class Board(Protocol):
    """The board the firmware's ``app.main`` is handed."""

    @property
    def config(self) -> Mapping[str, Any]:
        """``/config.json`` with its defaults (``firmware/config.py``)."""
        ...

    @property
    def flash(self) -> Flash: ...

    def bus(self, name: str) -> Any:
        """``"i2c"``, ``"pms"``, ``"sonar"`` or ``"vbat"`` (``machine.I2C``/``UART``/``ADC``),
        on the pins of ``firmware/pins.py``; ValueError for a bus the board does not have."""
        ...

    def udp(self, host: str, port: int) -> DatagramLink: ...

    def ticks_ms(self) -> int:
        """Milliseconds since power-on, wrapping at 2**30."""
        ...

    def ticks_diff(self, a: int, b: int) -> int:
        """``a - b`` across a wrap of ``ticks_ms``."""
        ...

    def time_ms(self) -> int:
        """The wall clock: Unix epoch milliseconds."""
        ...

    async def sleep_ms(self, ms: int) -> None: ...

    def feed_watchdog(self) -> None: ...

    def reset_cause(self) -> str:
        """Why this boot happened: one of ``RESET_CAUSE_NAMES``."""
        ...

    def reset(self) -> None:
        """Restart the chip; the next boot's cause is ``"soft"``. Does not return."""
        ...

    def deepsleep(self, ms: int) -> None:
        """Sleep ``ms`` and restart with cause ``"deepsleep"``. Does not return."""
        ...

    def mem(self) -> tuple[int, int]:
        """(free, allocated) bytes of heap."""
        ...

    def rssi(self) -> int | None:
        """The Wi-Fi signal in dBm, or None without a link."""
        ...

    def urandom(self, n: int) -> bytes: ...

    def log(self, line: str) -> None:
        """One line on the serial console."""
        ...


# --- checking a class against a contract from its source --------------------------------------


@dataclass(frozen=True)
class Method:
    """A method's shape: its parameters after ``self``, and whether it is a coroutine."""

    params: tuple[str, ...]
    is_async: bool


@dataclass(frozen=True)
class Shape:
    """What a class offers: methods by name, and the attributes it sets on ``self``."""

    methods: Mapping[str, Method]
    attributes: frozenset[str]


def protocol_shape(protocol: type) -> Shape:
    """The shape a Protocol asks for: its methods, and its properties as attributes."""
    methods: dict[str, Method] = {}
    attributes: set[str] = set()
    for name, member in vars(protocol).items():
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            attributes.add(name)
        elif inspect.isfunction(member):
            params = tuple(inspect.signature(member).parameters)[1:]
            methods[name] = Method(params, inspect.iscoroutinefunction(member))
    return Shape(methods, frozenset(attributes))


def class_shape(source: str, class_name: str) -> Shape:
    """The shape of ``class_name`` as ``source`` defines it (never imported: the chip's board
    imports ``machine`` and the VM's imports ``simpul_host``)."""
    tree = ast.parse(source)
    found = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name]
    if not found:
        raise ValueError(f"no class {class_name} in the source")
    methods: dict[str, Method] = {}
    attributes: set[str] = set()
    for node in found[0].body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            params = tuple(a.arg for a in node.args.args[1:] + node.args.kwonlyargs)
            methods[node.name] = Method(params, isinstance(node, ast.AsyncFunctionDef))
            if node.name == "__init__":
                attributes |= _self_attributes(node)
    return Shape(methods, frozenset(attributes))


def _self_attributes(init: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    names = set()
    for node in ast.walk(init):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and getattr(target.value, "id", "") == "self":
                names.add(target.attr)
    return names


def shape_mismatches(wanted: Shape, offered: Shape) -> list[str]:
    """How ``offered`` falls short of ``wanted``, one sentence each; empty when it honours it.
    Extra methods and attributes are allowed; a method must take the contract's parameters
    first, by the same names and in the same order, and be ``async`` exactly when it is."""
    problems = []
    for name in sorted(wanted.attributes - offered.attributes):
        problems.append(f"no attribute {name}")
    for name, method in sorted(wanted.methods.items()):
        have = offered.methods.get(name)
        if have is None:
            problems.append(f"no method {name}{_signature(method)}")
            continue
        if have.is_async != method.is_async:
            kind = "async" if method.is_async else "plain"
            problems.append(f"{name} must be {kind}, as the contract's {name}{_signature(method)}")
        if have.params[: len(method.params)] != method.params:
            problems.append(
                f"{name}{_signature(have)} takes other parameters than {name}{_signature(method)}"
            )
    return problems


def _signature(method: Method) -> str:
    return "(" + ", ".join(method.params) + ")"
