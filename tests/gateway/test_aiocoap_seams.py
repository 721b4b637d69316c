"""Where the gateway leans on aiocoap beyond its documented API, a test fails loudly if an
aiocoap upgrade moves the ground: the copied ``Context.render_to_pipe``, the socket behind
``bound_address``, and the pipe interface the site dispatches through."""

from __future__ import annotations

import ast
import inspect
import socket
import textwrap

import aiocoap
from aiocoap.messagemanager import MessageManager
from aiocoap.pipe import Pipe
from aiocoap.resource import Resource, Site
from aiocoap.transports.udp6 import MessageInterfaceUDP6

from gateway.daemon import Gateway, ServerContext, _bound_port


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
    ours = _calls(ServerContext.render_to_pipe)
    # aiocoap 0.4.17: run_driving_pipe(error_to_message(pipe, self.log),
    # self._render_to_pipe(pipe), name="Rendering for %r" % pipe.request). Ours differs only
    # in the constant task name; if this fails, review gateway.daemon.ServerContext.
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


def test_the_transport_method_the_server_context_rebuilds_is_still_aiocoaps() -> None:
    """ServerContext rebuilds aiocoap's transport assembly with the gate and the bounded
    message layer; if aiocoap assembles it differently, review it."""
    upstream = _calls(aiocoap.Context._append_tokenmanaged_messagemanaged_transport)
    assert sorted(upstream) == [
        "MessageManager",
        "TokenManager",
        "message_interface_constructor",
        "self.request_interfaces.append",
    ]
    for name in ("datagram_msg_received", "transport"):
        assert name in dir(MessageInterfaceUDP6) or name == "transport"
    assert "_recent_messages" in vars(MessageManager(_FakeTokenManager()))


class _FakeTokenManager:
    log = None
    loop = None


def test_the_pipe_interface_the_site_dispatches_through_is_there() -> None:
    for cls in (Resource, Site):
        assert inspect.iscoroutinefunction(cls.render_to_pipe), cls
    assert {"add_response", "add_exception"} <= set(dir(Pipe))
    assert "request" in inspect.signature(Pipe).parameters
