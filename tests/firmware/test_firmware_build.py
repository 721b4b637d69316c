"""hw.firmware_tools.build: every firmware file compiles with mpy-cross for the ESP32."""

from pathlib import Path

import pytest

from hw.firmware_tools import build as firmware_build


def test_every_firmware_file_compiles_for_esp32(capsys: pytest.CaptureFixture[str]) -> None:
    assert firmware_build.main(["--check"]) == 0, capsys.readouterr().err
    assert "xtensawin" in capsys.readouterr().out


def test_out_writes_one_mpy_per_module(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "alpha.py").write_text("def f(x):\n    return x + 1\n")
    (src / "beta.py").write_text("import alpha\n")
    out = tmp_path / "out"
    assert firmware_build.main(["--out", str(out), "--src", str(src)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["alpha.mpy", "beta.mpy"]
    assert (out / "alpha.mpy").read_bytes()[:2] == b"M\x06"  # .mpy format version 6


def test_failure_names_the_file_and_exits_nonzero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "good.py").write_text("X = 1\n")
    (tmp_path / "broken.py").write_text("def f(:\n    pass\n")
    assert firmware_build.main(["--check", "--src", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "broken.py" in err
    assert "SyntaxError" in err
    assert "good.py" not in err


def test_empty_source_directory_fails(tmp_path: Path) -> None:
    assert firmware_build.main(["--check", "--src", str(tmp_path)]) == 1
