"""The gateway daemon: the store, the CoAP server and the uplinks, started and stopped together.

Three kinds of process share the work, so that they share no interpreter lock:

* this one runs the CoAP server (aiocoap) and answers boards;
* the writer process (:mod:`gateway.intake.writer`) decodes and commits what boards send, and says
  when each request is on disk, which is when this process answers it;
* one process per uplink (:mod:`gateway.uplinks.supervisor`) reads the outbox with its own cursor;
  so do the batcher, which signs readings into hash-chained batches, the batch uplinks
  (MQTT, HTTP, batch file) and the outbox keeper (pruning, the disk budget's policy).

They meet in the SQLite file (WAL mode): only the writer writes readings and the registry,
each uplink writes only its own cursor, and this process only reads.

With a ``[gateway.pi]`` table this process also owns the Raspberry Pi's GPIO
(:class:`gateway.pi.panel.PiPanel`): the status LED, the button (a long press sets
:attr:`Gateway.shutdown`) and the wired boards' EN and IO0 lines, which the control process
reaches over a local socket.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
from collections.abc import Callable
from typing import Any

import aiocoap
from aiocoap.pipe import Pipe, error_to_message, run_driving_pipe
from aiocoap.tokenmanager import TokenManager
from aiocoap.transports.udp6 import MessageInterfaceUDP6

from gateway.config import GatewayConfig
from gateway.errors import BindError, GatewayError, OutboxFull, StateDirError
from gateway.intake.blockwise import Block1Spool
from gateway.intake.gate import BoundedMessageManager, Gate, GatedUDP6, QuietLogFilter
from gateway.intake.requests import Counters
from gateway.intake.resources import Admission, build_site
from gateway.intake.writer_link import WriterLink
from gateway.oscore import stats_file
from gateway.oscore.contexts import REASONS as OSCORE_REASONS
from gateway.oscore.contexts import Contexts
from gateway.oscore.keys import decode_keys_file
from gateway.oscore.site import GatewayOscoreSite
from gateway.ota.cache import load_root_key
from gateway.ota.hints import UpdateHints
from gateway.ota.serve import ReleaseFiles
from gateway.pi.panel import PiPanel
from gateway.store.board_keys import BoardKeyTable
from gateway.store.budget import disk_state, filesystem_usage
from gateway.store.control import ControlStore
from gateway.store.registry import StoreReader
from gateway.store.releases import ReleaseTable
from gateway.store.schema import now_ms, prepare
from gateway.uplinks.jsonl import UPLINK_NAME as FILE_UPLINK
from gateway.uplinks.registry import enabled_batch_uplinks
from gateway.uplinks.supervisor import UplinkSupervisor

log = logging.getLogger(__name__)

#: Persistent outbox counters shown in :meth:`Gateway.stats`.
_OUTBOX_COUNTERS = (
    "pruned_readings",
    "pruned_batches",
    "dropped_readings",
    "dropped_batches",
    "dropped_file_readings",
    "invalid_readings",
)
#: How long a stop waits for requests in hand to be committed and answered.
_DRAIN_TIMEOUT_S = 5.0


class Gateway:
    """One gateway: ``await start()``, serve, ``await stop()``.

    ``before_commit`` is passed to the writer process, so it must pickle (a test hook; see
    :class:`gateway.store.schema.StoreWriter`).
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        before_commit: Callable[[], None] | None = None,
        pin_factory: Any = None,
    ) -> None:
        self.config = config
        #: The pin factory for ``[gateway.pi]`` (None: the one ``gateway.pi.pin_factory``
        #: names); tests pass a MockFactory.
        self.pin_factory = pin_factory
        #: The GPIO, when the config has a ``[gateway.pi]`` table (set when started).
        self.pi: PiPanel | None = None
        #: Set when the button asked for a safe shutdown: whoever runs the gateway stops it
        #: and then runs ``gateway.pi.shutdown_command``.
        self.shutdown = asyncio.Event()
        self.counters = Counters()
        self.writer = WriterLink(
            config.db_path,
            synchronous=config.store.synchronous,
            limits=config.limits,
            counters=self.counters,
            before_commit=before_commit,
        )
        self.uplinks = UplinkSupervisor(config)
        self.admission = Admission(config.limits.max_in_flight_per_peer)
        limits = config.limits
        self.gate = Gate(
            peer_rate=limits.peer_rate,
            peer_burst=limits.peer_burst,
            host_rate=limits.host_rate,
            host_burst=limits.host_burst,
            total_rate=limits.total_rate,
            total_burst=limits.total_burst,
        )
        self.spool = Block1Spool(
            max_bytes=limits.max_request_bytes, max_transfers=limits.max_block1_transfers
        )
        self._store: StoreReader | None = None
        self._releases: ReleaseFiles | None = None
        self._ota_table: ReleaseTable | None = None
        self._control_table: ControlStore | None = None
        self._keys: BoardKeyTable | None = None
        self._keys_mark: tuple[int, int] | None = None
        self._security_reported: dict[str, Any] | None = None
        self._keys_file_stamp: tuple[int, int, int] | None = None
        self._watch: asyncio.Task[None] | None = None
        #: Every enrolled board's OSCORE security context.
        self.oscore = Contexts(config.state_dir, self.counters.refused)
        #: Which boards are told an update is due (set when started).
        self.hints: UpdateHints | None = None
        self._context: aiocoap.Context | None = None
        self._bound: tuple[str, int] | None = None
        self._budget: asyncio.Task[None] | None = None
        self.admission.retry_after_s = config.outbox.retry_after_s

    async def start(self) -> None:
        """Open the store, bind the CoAP server, start the uplinks.

        Raises :class:`StateDirError`, :class:`StoreCorrupt` or :class:`BindError`.
        """
        self._prepare_state_dir()
        # A root key that is configured but unusable is a config error now, not at the
        # first release added (gateway.ota.cache).
        load_root_key(self.config)
        prepare(self.config.db_path)
        self._store = StoreReader(self.config.db_path)
        self._releases = ReleaseFiles(self.config.db_path, self.config.state_dir)
        self._ota_table = ReleaseTable(self.config.db_path)
        self._control_table = ControlStore(self.config.db_path, read_only=True)
        self.hints = UpdateHints(self._ota_table, control=self._control_table)
        self.hints.remember(self._store.boards_health())
        try:
            self._start_oscore()
            await self.writer.start()
            await self._bind()
            await self.uplinks.start()
            self._budget = asyncio.create_task(self._watch_budget(), name="outbox-budget")
            self._watch = asyncio.create_task(self._watch_keys(), name="board-keys")
            await self._start_pi()
        except BaseException:
            await self.stop()
            raise

    def _start_oscore(self) -> None:
        """Import the keys file, open the boards' contexts; say loudly if plain CoAP is on."""
        security = self.config.security
        if security.plain_coap:
            log.warning(
                "LAB MODE: security.plain_coap is on; anyone on the network may post readings"
                " under any board's name (unprotected CoAP)"
            )
        if security.keys_file is not None:
            try:
                self._import_keys_file()
            except OSError as exc:
                raise StateDirError(
                    f"security.keys_file: cannot read {security.keys_file}: {exc.strerror}"
                ) from None
        self._keys = BoardKeyTable(self.config.db_path, read_only=True)
        self._keys_mark = self._keys.mark()
        self.oscore.start(self._keys.all())
        log.info("OSCORE: %d boards enrolled", self.oscore.boards)

    def _import_keys_file(self) -> None:
        """Enrol or re-key the boards ``security.keys_file`` names (a board whose material
        changed is rotated: ``gateway.oscore.contexts``). Raises OSError or BadBoardKeys."""
        path = self.config.security.keys_file
        assert path is not None
        stat = os.stat(path)
        self._keys_file_stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        keys = BoardKeyTable(self.config.db_path)
        try:
            keys.put(decode_keys_file(path.read_bytes()), source="file")
        finally:
            keys.close()

    def _keys_file_changed(self) -> bool:
        path = self.config.security.keys_file
        if path is None:
            return False
        try:
            stat = os.stat(path)
        except OSError:
            return False  # being replaced, or gone: the boards enrolled stay
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size) != self._keys_file_stamp

    async def _watch_keys(self) -> None:
        """Follow the keys file and the ``board_keys`` table: boards enrolled, re-keyed or
        removed meanwhile."""
        while self._keys is not None:
            await asyncio.sleep(self.config.security.reload_interval_ms / 1000)
            if self._keys_file_changed():
                try:
                    self._import_keys_file()
                except (OSError, GatewayError) as exc:
                    log.warning("security.keys_file not imported, keys kept as they were: %s", exc)
            try:
                mark = self._keys.mark()
                if mark != self._keys_mark:
                    self.oscore.sync(self._keys.all())
                    self._keys_mark = mark
                    log.info("OSCORE: %d boards enrolled", self.oscore.boards)
            except Exception as exc:  # a busy store: try again at the next round
                log.warning("cannot follow board keys: %s", exc)
            self._report_security()

    def _report_security(self) -> None:
        """Tell the control process what was refused (``gateway.oscore.stats_file``)."""
        stats = self.security_stats()
        if stats == self._security_reported:
            return
        try:
            stats_file.write(self.config.state_dir, stats)
            self._security_reported = stats
        except OSError as exc:  # a full disk: the health says so elsewhere
            log.warning("cannot write %s: %s", stats_file.NAME, exc)

    async def _start_pi(self) -> None:
        if self.config.pi is None:
            return
        from gateway.pi.factory import pin_factory

        factory = self.pin_factory or pin_factory(self.config.pi)
        self.pi = PiPanel(
            self.config,
            pin_factory=factory,
            outbox_full=lambda: self.admission.outbox_full,
            on_shutdown=self.shutdown.set,
        )
        await self.pi.start()

    def _prepare_state_dir(self) -> None:
        state_dir = self.config.state_dir
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateDirError(f"cannot create state dir {state_dir}: {exc.strerror}") from None
        if not os.access(state_dir, os.W_OK | os.X_OK):
            raise StateDirError(f"state dir {state_dir} is not writable")

    async def _bind(self) -> None:
        _quiet_coap_stack_logs()
        host, port = self.config.bind.host, self.config.bind.port
        site = build_site(
            self.writer,
            self.config.limits,
            self.counters,
            self.admission,
            stats=self.stats,
            spool=self.spool,
            releases=self._releases,
            hints=self.hints,
            plain_coap=self.config.security.plain_coap,
        )
        site.gate = self.gate
        site.max_dedup_entries = self.config.limits.max_dedup_entries
        protected = GatewayOscoreSite(site, self.oscore.credentials, self.counters.refused)
        try:
            self._context = await ServerContext.create_server_context(
                protected, bind=(host, port), transports=["udp6"]
            )
        except OSError as exc:
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise BindError(f"cannot listen on {host}:{port}: {reason or exc}") from None
        self._bound = (host, _bound_port(self._context) or port)

    @property
    def bound_address(self) -> tuple[str, int]:
        """(host, port) the server listens on; the real port when port 0 was asked for."""
        if self._bound is None:
            raise RuntimeError("gateway is not started")
        return self._bound

    @property
    def store(self) -> StoreReader:
        """Read-only access to the database (registry, outbox positions)."""
        if self._store is None:
            raise RuntimeError("gateway is not started")
        return self._store

    def stats(self) -> dict[str, Any]:
        """A snapshot for operators and tests (this process's counters; the rest from the db)."""
        online_since = now_ms() - self.config.online_window_s * 1000
        store = self.store
        seen, online = store.board_counts(online_since)
        at = store.positions()
        head, delivered, newest = at.head_id, at.delivered_ids, at.newest_seq
        outbox = self.config.outbox
        batching = bool(enabled_batch_uplinks(self.config))
        return {
            "gateway_id": self.config.gateway_id,
            "readings_stored": self.counters.readings_stored,
            "duplicates": self.counters.duplicates,
            "refused": dict(self.counters.refused),
            "security": self.security_stats(),
            # What never reached a resource: screened out by the gate, by reason.
            "screened": dict(self.gate.refused),
            "intake": {
                "dedup_entries": self._dedup_entries(),
                "block1_transfers": len(self.spool),
                "block1_evicted": self.spool.evicted,
                "in_flight": self.admission.in_flight,
                "writer_restarts": self.writer.restarts,
                "uplink_restarts": sum(self.uplinks.restarts.values()),
            },
            "boards_seen": seen,
            "boards_online": online,
            # Answers that told a board an update is due (gateway.ota.hints).
            "ota_hints_sent": self.hints.sent if self.hints is not None else 0,
            "outbox_head": head,
            "uplinks": {
                name: {
                    "delivered_id": delivered.get(name, 0),
                    "backlog": max(head - delivered.get(name, 0), 0),
                }
                for name in self.uplinks.names
                if name == FILE_UPLINK
            },
            "batches": {
                "enabled": batching,
                "newest_seq": newest,
                "batched_id": at.batched_id,
                "waiting": max(head - at.batched_id, 0) if batching else 0,
            },
            "batch_uplinks": {
                name: {
                    "delivered_seq": at.delivered_seqs.get(name, 0),
                    "backlog": max(newest - at.delivered_seqs.get(name, 0), 0),
                }
                for name in enabled_batch_uplinks(self.config)
            },
            "outbox": {
                "used_bytes": at.used_bytes,
                "max_bytes": outbox.max_bytes,
                "policy": outbox.policy,
                "full": self.admission.outbox_full,
                "refused": self.counters.refused.get(OutboxFull.reason, 0),
                **{name: at.counters.get(name, 0) for name in _OUTBOX_COUNTERS},
            },
            # One verdict on the SD card and the outbox budget (gateway.store.budget).
            "disk": disk_state(
                at.used_bytes,
                outbox.max_bytes,
                policy=outbox.policy,
                filesystem=filesystem_usage(self.config.state_dir),
            ),
        }

    def security_stats(self) -> dict[str, Any]:
        """Who may talk to the gateway, and what it refused (OSCORE and plain CoAP)."""
        refused = self.counters.refused
        return {
            "plain_coap": self.config.security.plain_coap,
            "boards_enrolled": self.oscore.boards,
            # Boards re-keyed that have not used their new key yet (each is handed it).
            "rotating": self.oscore.rotating,
            "restored": self.oscore.restored,
            "instance": self.oscore.binding.instance,
            "refused": {reason: refused.get(reason, 0) for reason in OSCORE_REASONS},
        }

    async def alive(self, timeout_s: float) -> bool:
        """Whether the daemon serves: this loop turns (we are here) and the writer answers."""
        return await self.writer.ping(timeout_s)

    def _dedup_entries(self) -> int:
        if self._context is None:
            return 0
        return sum(
            len(getattr(getattr(i, "token_interface", None), "_recent", ()))
            for i in self._context.request_interfaces
        )

    async def _watch_budget(self) -> None:
        """Under the ``refuse`` policy, refuse readings while the store is over budget."""
        outbox = self.config.outbox
        if outbox.max_bytes <= 0 or outbox.policy != "refuse":
            return
        while True:
            try:
                full = self.store.used_bytes() > outbox.max_bytes
            except Exception as exc:  # a busy or closing store: keep the last verdict
                log.debug("budget check failed: %s", exc)
            else:
                if full != self.admission.outbox_full:
                    log.warning("outbox %s its budget", "over" if full else "back within")
                self.admission.outbox_full = full
            await asyncio.sleep(outbox.check_interval_ms / 1000)

    async def stop(self) -> None:
        """Stop accepting requests, let the writer commit what it has, stop the uplinks."""
        # Requests in hand get their answer before the socket closes.
        for task in (self._budget, self._watch):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._budget = self._watch = None
        if self.pi is not None:
            await self.pi.stop()
            self.pi = None
        await self.admission.close(_DRAIN_TIMEOUT_S)
        if self._context is not None:
            await self._context.shutdown()
            self._context = None
        self.oscore.close()
        if self._keys is not None:
            self._keys.close()
            self._keys = None
        await self.writer.stop()
        await self.uplinks.stop()
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._releases is not None:
            self._releases.close()
            self._releases = None
        if self._ota_table is not None:
            self._ota_table.close()
            self._ota_table = None
        if self._control_table is not None:
            self._control_table.close()
            self._control_table = None


class ServerContext(aiocoap.Context):  # type: ignore[misc]
    """aiocoap's server context, gated, and without a per-request cost it need not pay.

    Its UDP transport screens every datagram through the gateway's :class:`Gate` first,
    and its message layer keeps a bounded deduplication cache
    (:mod:`gateway.intake.gate`); both come from the site's ``gate`` and
    ``max_dedup_entries`` (set by :meth:`Gateway._bind`).

    ``Context.render_to_pipe`` names each rendering task ``"Rendering for %r" % request``,
    formatting the whole message (addresses, options, payload) for every request, wanted or
    not: about a tenth of the CPU time this process spends per request under load. This is
    the same method (aiocoap 0.4.17) with a constant task name.
    """

    def render_to_pipe(self, pipe: Pipe) -> None:
        run_driving_pipe(
            error_to_message(pipe, self.log), self._render_to_pipe(pipe), name="coap-render"
        )

    async def _append_tokenmanaged_messagemanaged_transport(
        self, message_interface_constructor: Any
    ) -> None:
        # aiocoap 0.4.17's method, with the bounded message layer and the gated transport.
        site = self.serversite
        token_manager = TokenManager(self)
        messages = BoundedMessageManager(token_manager)
        messages.max_entries = site.max_dedup_entries
        transport = await message_interface_constructor(messages)
        if isinstance(transport, MessageInterfaceUDP6) and site.gate is not None:
            transport.__class__ = GatedUDP6
            transport.gate = site.gate
        messages.message_interface = transport
        token_manager.token_interface = messages
        self.request_interfaces.append(token_manager)


def _quiet_coap_stack_logs() -> None:
    """Rate-limit aiocoap's own warnings about peers' odd messages (once per kind a minute)."""
    stack = logging.getLogger("coap-server")
    if not any(isinstance(f, QuietLogFilter) for f in stack.filters):
        stack.addFilter(QuietLogFilter())


def tune_gc() -> None:
    """Collect garbage less often in a process that serves boards (call once it is started).

    aiocoap keeps every exchange for its deduplication lifetime (about four minutes), so
    under load the server's heap grows by tens of thousands of live objects per second.
    With CPython's default thresholds (700, 10, 10) the collector rescans that growing heap
    over and over: in the benchmark, 40 % of this process's CPU time, in pauses of up to
    300 ms that leave requests in hand long enough for aiocoap to send empty ACKs. Almost
    all garbage here dies by reference counting, so collecting the young generation every
    50 000 allocations, and the whole heap rarely, loses little memory. ``gc.freeze`` puts
    what start-up made (modules, aiocoap's tables) out of every collection's way.
    """
    gc.freeze()
    gc.set_threshold(50_000, 10, 100)


def _bound_port(context: aiocoap.Context) -> int | None:
    """The UDP port aiocoap's socket actually got (aiocoap has no public accessor)."""
    for interface in context.request_interfaces:
        transport = getattr(
            getattr(getattr(interface, "token_interface", None), "message_interface", None),
            "transport",
            None,
        )
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            port: int = sock.getsockname()[1]
            return port
    return None
