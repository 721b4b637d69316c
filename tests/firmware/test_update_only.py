"""The update-only modules (hw.firmware_tools.UPDATE_ONLY) are never imported when the
application loads, so their code is on the heap only while an update is checked
(tests/hw_vm/test_heap_budget.py measures the two apart); the boot part is what it says."""

from __future__ import annotations

import ast

from hw.firmware_tools import BOOT_PART, FIRMWARE_DIR, UPDATE_ONLY


def load_time_imports(module: str) -> set[str]:
    """Firmware modules ``module`` imports when it is loaded: its module-level imports (also
    under a module-level ``try``/``if``), not those inside functions, which run later."""
    tree = ast.parse((FIRMWARE_DIR / f"{module}.py").read_text())
    names: set[str] = set()
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Try | ast.If | ast.With):
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, field, []):
                    pending.extend(child.body if isinstance(child, ast.ExceptHandler) else [child])
    return {n for n in names if (FIRMWARE_DIR / f"{n}.py").exists()}


def closure(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(load_time_imports(module))
    return seen


def test_the_application_never_loads_an_update_only_module() -> None:
    loaded = closure("main")
    assert {"app", "board", "config", "coap", "ringbuf", "errors", "slots"} <= loaded
    assert loaded.isdisjoint(UPDATE_ONLY), loaded & set(UPDATE_ONLY)


def test_update_only_modules_exist_and_need_only_each_other_and_codecs() -> None:
    for module in UPDATE_ONLY:
        assert (FIRMWARE_DIR / f"{module}.py").is_file(), module
    assert closure("manifest") == {"manifest", "cose", "ed25519", "sha512", "cbor", "errors"}


def test_the_boot_part_loads_only_itself() -> None:
    # main.py is the boot part's too (MicroPython runs it from the root), but it is the one
    # that starts the application, from the slot boot.py chose.
    assert closure("boot") == set(BOOT_PART) - {"main"}


def test_load_time_imports_sees_through_try_but_not_into_functions() -> None:
    assert "cbor" in load_time_imports("health")
    assert "bme280" not in load_time_imports("app")  # a driver, imported when its kind runs
    assert "micropython" not in load_time_imports("cbor")  # not a firmware module


def test_the_app_unloads_exactly_the_update_only_modules() -> None:
    import app

    assert app.UPDATE_ONLY == UPDATE_ONLY
