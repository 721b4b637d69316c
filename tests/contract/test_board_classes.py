"""Every board class honours the board contract (hw/contract.py) in its shape: the chip's
(firmware/board.py), the CPython engine's and the MicroPython VM engine's, and their flash
and datagram links. Checked from the source, since two of them cannot be imported here."""

from __future__ import annotations

from pathlib import Path

import pytest

from hw import contract
from hw.engines.cpython.board import EmulatedBoard
from hw.flash import Flash
from hw.link import UdpLink

ROOT = Path(__file__).resolve().parents[2]
VM_BOARD = "hw/engines/mpy/rom/vmboard.py"

BOARDS = [
    ("firmware/board.py", "Board"),
    (VM_BOARD, "Board"),
    ("hw/engines/cpython/board.py", "EmulatedBoard"),
]
FLASHES = [("firmware/flashfs.py", "Flash"), ("hw/flash.py", "Flash")]
LINKS = [("firmware/board.py", "Udp"), (VM_BOARD, "Udp"), ("hw/link.py", "UdpLink")]


def mismatches(protocol: type, path: str, class_name: str) -> list[str]:
    offered = contract.class_shape((ROOT / path).read_text(), class_name)
    return contract.shape_mismatches(contract.protocol_shape(protocol), offered)


@pytest.mark.parametrize(("path", "class_name"), BOARDS)
def test_board_class_honours_the_board_contract(path: str, class_name: str) -> None:
    assert mismatches(contract.Board, path, class_name) == []


@pytest.mark.parametrize(("path", "class_name"), FLASHES)
def test_flash_class_honours_the_flash_contract(path: str, class_name: str) -> None:
    assert mismatches(contract.Flash, path, class_name) == []


@pytest.mark.parametrize(("path", "class_name"), LINKS)
def test_datagram_link_honours_the_link_contract(path: str, class_name: str) -> None:
    assert mismatches(contract.DatagramLink, path, class_name) == []


def test_a_board_that_falls_short_is_named_for_each_shortfall() -> None:
    source = """
class Board:
    def __init__(self, config):
        self.config = config

    def bus(self, name):
        pass

    def sleep_ms(self, ms):
        pass

    def udp(self, port, host):
        pass
"""
    problems = contract.shape_mismatches(
        contract.protocol_shape(contract.Board), contract.class_shape(source, "Board")
    )
    assert "no attribute flash" in problems
    assert "no method rssi()" in problems
    assert "sleep_ms must be async, as the contract's sleep_ms(ms)" in problems
    assert "udp(port, host) takes other parameters than udp(host, port)" in problems
    assert not any(p.startswith("bus") for p in problems)


def as_contract_board(board: EmulatedBoard) -> contract.Board:
    """mypy holds the CPython engine's board to the contract's types, not only its names."""
    return board


def as_contract_flash(flash: Flash) -> contract.Flash:
    return flash


def as_contract_link(link: UdpLink) -> contract.DatagramLink:
    return link
