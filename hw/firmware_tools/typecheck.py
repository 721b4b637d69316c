"""Type-check the firmware against MicroPython's ESP32 stubs, not CPython's typeshed.

``python -m hw.firmware_tools.typecheck`` lays the port's stubs (micropython-esp32-stubs, and the
``_mpy_shed`` helpers of micropython-stdlib-stubs) out in a temporary directory, uses
micropython-stdlib-stubs' ``stdlib/`` as the typeshed, and runs mypy with
``firmware/mypy.ini`` over every firmware file.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, files
from pathlib import Path

from hw.firmware_tools import FIRMWARE_DIR

STUB_DISTRIBUTIONS = ("micropython-esp32-stubs", "micropython-stdlib-stubs")


def lay_out_stubs(out: Path) -> Path:
    """Copy the port's top-level stubs into ``out``; return the typeshed directory."""
    typeshed: Path | None = None
    for dist in STUB_DISTRIBUTIONS:
        try:
            listed = files(dist) or []
        except PackageNotFoundError:
            raise SystemExit(f"{dist} is not installed: pip install -e '.[firmware]'") from None
        for entry in listed:
            name = str(entry)
            if name.startswith("stdlib/"):
                if name == "stdlib/VERSIONS":
                    typeshed = Path(str(entry.locate())).parent.parent
                continue
            if name.endswith(".pyi"):
                target = out / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(str(entry.locate()), target)
    if typeshed is None:
        raise SystemExit("micropython-stdlib-stubs has no stdlib/VERSIONS")
    return typeshed


def main(argv: list[str] | None = None) -> int:
    from mypy import api

    with tempfile.TemporaryDirectory(prefix="esp32-stubs-") as tmp:
        typeshed = lay_out_stubs(Path(tmp))
        os.environ["MYPYPATH"] = tmp
        sources = sorted(str(p) for p in FIRMWARE_DIR.glob("*.py"))
        args = [
            "--config-file", str(FIRMWARE_DIR / "mypy.ini"),
            "--custom-typeshed-dir", str(typeshed),
            "--no-site-packages",
            *(argv or []),
            *sources,
        ]  # fmt: skip
        out, err, status = api.run(args)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
