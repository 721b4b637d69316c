"""Where the gateway leans on aiocoap beyond its documented API, a test fails loudly if an
aiocoap upgrade moves the ground: the copied ``Context.render_to_pipe``, the socket behind
``bound_address``, and the pipe interface the site dispatches through."""

from __future__ import annotations

import ast
import inspect
import socket
import textwrap

import aiocoap
from aiocoap.pipe import Pipe
from aiocoap.resource import Resource, Site

from gateway.daemon import Gateway, _bound_port, _ServerContext


def _calls(function: object) -> list[str]:
    """The names of the functions a method's body calls, in order (docstring ignored)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))  # type: ignore[arg-type]
    return [
        ast.unparse(node.func)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and not isinstance(node.func, ast.Subscript)
    ]


def test_context_render_to_pipe_is_still_the_method_the_gateway_copied() -> None:
    upstream = _calls(aiocoap.Context.render_to_pipe)
    ours = _calls(_ServerContext.render_to_pipe)
    # aiocoap 0.4.17: run_driving_pipe(error_to_message(pipe, self.log),
    # self._render_to_pipe(pipe), name="Rendering for %r" % pipe.request). Ours differs only
    # in the constant task name; if this fails, review gateway.daemon._ServerContext.
    assert sorted(upstream) == ["error_to_message", "run_driving_pipe", "self._render_to_pipe"]
    assert sorted(ours) == sorted(upstream)


async def test_bound_address_reads_the_port_the_socket_really_got(tmp_path: object) -> None:
    from pathlib import Path

    from tests.gateway.conftest import gateway_config

    gateway = Gateway(gateway_config(Path(str(tmp_path)) / "state"))
    await gateway.start()
    try:
        port = _bound_port(gateway._context)
        assert port is not None
        assert port > 0
        assert gateway.bound_address[1] == port
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            pass  # in use: by the gateway, as it should be
        else:
            raise AssertionError(f"nothing listens on the port {port} the gateway reported")
        finally:
            probe.close()
    finally:
        await gateway.stop()


def test_the_pipe_interface_the_site_dispatches_through_is_there() -> None:
    for cls in (Resource, Site):
        assert inspect.iscoroutinefunction(cls.render_to_pipe), cls
    assert {"add_response", "add_exception"} <= set(dir(Pipe))
    assert "request" in inspect.signature(Pipe).parameters
