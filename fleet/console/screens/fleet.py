"""The Fleet screen: sites → gateways → boards as a tree, coloured by liveness, with counts
per node, under a summary bar of the whole fleet.

A new snapshot changes the tree in place: nodes are kept by id, only labels that changed are
set, nodes gone are removed, so what the operator expanded stays expanded and the cursor stays
on the node it was on. Boards are in the tree only under the gateways expanded: sites and
gateways carry the counts, and a city's 10,000 board nodes would cost every update.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, TypeAlias

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Header, Static, Tree
from textual.widgets.tree import TreeNode

from fleet.console.backend import BoardRow, FleetSnapshot, GatewayRow, SiteRow
from fleet.console.health import Counts, Liveness, liveness
from fleet.console.screens.base import FleetView
from fleet.console.view import ViewContext

#: A node's key: ``("site" | "gateway" | "board", id)``.
NodeKey: TypeAlias = tuple[str, str]
FleetNode: TypeAlias = TreeNode[NodeKey]
_DEPTH = {"board": 0, "gateway": 1, "site": 2}


def _counts_text(counts: Counts) -> Text:
    text = Text(f"{counts.online}/{counts.total} online")
    if counts.stale:
        text.append(f" · {counts.stale} stale", style=Liveness.STALE.style)
    if counts.never:
        text.append(f" · {counts.never} never seen", style=Liveness.NEVER.style)
    return text


def site_label(site: SiteRow, counts: Counts) -> Text:
    return Text.assemble(
        ("● ", counts.worst.style), (site.site_id, "bold"), f"  {site.name}  ", _counts_text(counts)
    )


def gateway_label(gateway: GatewayRow, counts: Counts) -> Text:
    label = Text.assemble(("● ", counts.worst.style), (gateway.gateway_id, "bold"), "  ")
    label.append_text(_counts_text(counts))
    if gateway.backlog:
        label.append(f" · backlog {gateway.backlog}", style="magenta")
    if gateway.retired:
        label.append(" · retired", style="italic")
    return label


def board_label(board: BoardRow, state: Liveness) -> Text:
    label = Text.assemble(("● ", state.style), board.board_id, f"  {board.kind}  ")
    label.append(state.value, style=state.style)
    if board.ota_state:
        label.append(f" · {board.ota_state}")
    return label


def summary_text(snapshot: FleetSnapshot, states: Iterable[Liveness]) -> Text:
    counts = Counts()
    for state in states:
        counts = counts.add(state)
    backlogged = sum(1 for g in snapshot.gateways if g.backlog)
    return Text.assemble(
        "Boards online ",
        (f"{counts.online}/{counts.total}", "bold"),
        "   Alerts open ",
        (str(snapshot.open_alerts), "bold red" if snapshot.open_alerts else "bold"),
        "   Rollouts running ",
        (str(snapshot.running_rollouts), "bold"),
        "   Gateways with backlog ",
        (str(backlogged), "bold magenta" if backlogged else "bold"),
        "   Readings today ",
        (str(snapshot.readings_today), "bold"),
    )


class FleetScreen(FleetView):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("e", "expand_all", "Expand all"),
        Binding("c", "collapse_all", "Collapse all"),
    ]

    def __init__(self, context: ViewContext) -> None:
        super().__init__(context)
        self._fleet_nodes: dict[NodeKey, FleetNode] = {}
        self._labels: dict[NodeKey, Text] = {}
        self._summary_text = Text()
        #: From the snapshot drawn last: each gateway's boards, and each board's liveness.
        self._boards_of: dict[str, list[BoardRow]] = {}
        self._states: dict[str, Liveness] = {}
        self.summary = Static("Reading the fleet…", id="summary")
        self.fleet_tree: Tree[NodeKey] = Tree("fleet", id="fleet-tree")
        self.fleet_tree.show_root = False
        self.fleet_tree.root.expand()

    def compose(self) -> ComposeResult:
        yield Header()
        yield self.summary
        yield self.fleet_tree
        yield Footer()

    def node(self, kind: str, ident: str) -> FleetNode | None:
        """The tree's node for a site, gateway or board (``None``: not in the tree)."""
        return self._fleet_nodes.get((kind, ident))

    def draw(self, snapshot: FleetSnapshot) -> None:
        now = self.context.now_ms()
        window = self.context.stale_after_ms
        states = {b.board_id: liveness(b.last_seen_ms, now, window) for b in snapshot.boards}
        per_site: dict[str, Counts] = {}
        per_gateway: dict[str, Counts] = {}
        boards_of: dict[str, list[BoardRow]] = {}
        for board in snapshot.boards:
            state = states[board.board_id]
            per_site[board.site_id] = per_site.get(board.site_id, Counts()).add(state)
            per_gateway[board.gateway_id] = per_gateway.get(board.gateway_id, Counts()).add(state)
            boards_of.setdefault(board.gateway_id, []).append(board)
        self._boards_of, self._states = boards_of, states

        summary = summary_text(snapshot, states.values())
        if summary != self._summary_text:
            self._summary_text = summary
            self.summary.update(summary)
        tree = self.fleet_tree
        cursor = tree.cursor_node
        wanted: set[NodeKey] = set()
        for site in snapshot.sites:
            key = ("site", site.site_id)
            wanted.add(key)
            label = site_label(site, per_site.get(site.site_id, Counts()))
            self._place(key, tree.root, label, expand=True)
        for gateway in snapshot.gateways:
            key = ("gateway", gateway.gateway_id)
            parent = self._fleet_nodes.get(("site", gateway.site_id))
            if parent is None or ("site", gateway.site_id) not in wanted:
                continue
            wanted.add(key)
            counts = per_gateway.get(gateway.gateway_id, Counts())
            self._place(key, parent, gateway_label(gateway, counts))
        # Only sites and gateways leave the tree here: a gateway's boards go with it, or are
        # dropped when it is collapsed (_fill_gateway).
        gone = sorted(
            (k for k in self._fleet_nodes if k[0] != "board" and k not in wanted),
            key=lambda k: _DEPTH[k[0]],
        )
        for key in gone:
            self._forget_children(self._fleet_nodes[key])
            self._labels.pop(key, None)
            self._fleet_nodes.pop(key).remove()
        for key, node in list(self._fleet_nodes.items()):
            if key[0] == "gateway":
                self._fill_gateway(node)
        # New nodes above the cursor shift its line; put it back on the node it was on.
        if (
            cursor is not None
            and cursor.data in self._fleet_nodes
            and tree.cursor_node is not self._fleet_nodes[cursor.data]
        ):
            tree.move_cursor(self._fleet_nodes[cursor.data], animate=False)

    def _place(self, key: NodeKey, parent: FleetNode, label: Text, *, expand: bool = False) -> None:
        node = self._fleet_nodes.get(key)
        if node is None:
            node = parent.add(label, data=key, expand=expand)
            self._fleet_nodes[key] = node
            self._labels[key] = label
        elif self._labels.get(key) != label:
            node.set_label(label)
            self._labels[key] = label

    def _fill_gateway(self, node: FleetNode) -> None:
        """Give an expanded gateway's node its boards, in id order, labels up to date; a
        collapsed one none (10,000 board nodes would cost every update)."""
        if node.data is None:
            return
        if not node.is_expanded:
            if node.children:
                self._forget_children(node)
                node.remove_children()
            return
        boards = self._boards_of.get(node.data[1], [])
        keys = [("board", b.board_id) for b in boards]
        if [child.data for child in node.children] != keys:
            self._forget_children(node)
            node.remove_children()
            for key, board in zip(keys, boards, strict=True):
                label = board_label(board, self._states[board.board_id])
                old = self._fleet_nodes.get(key)
                if old is not None:  # the board moved here from another gateway
                    old.remove()
                self._fleet_nodes[key] = node.add_leaf(label, data=key)
                self._labels[key] = label
            return
        for key, board in zip(keys, boards, strict=True):
            label = board_label(board, self._states[board.board_id])
            if self._labels.get(key) != label:
                self._fleet_nodes[key].set_label(label)
                self._labels[key] = label

    def _forget_children(self, node: FleetNode) -> None:
        for child in node.children:
            if child.data is not None and self._fleet_nodes.get(child.data) is child:
                del self._fleet_nodes[child.data]
                self._labels.pop(child.data, None)

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[NodeKey]) -> None:
        if event.node.data is not None and event.node.data[0] == "gateway":
            self._fill_gateway(event.node)

    def on_tree_node_collapsed(self, event: Tree.NodeCollapsed[NodeKey]) -> None:
        if event.node.data is not None and event.node.data[0] == "gateway":
            self._fill_gateway(event.node)

    def on_tree_node_selected(self, event: Tree.NodeSelected[NodeKey]) -> None:
        """Enter on a board opens it."""
        key = event.node.data
        if key is not None and key[0] == "board":
            self.context.open_board(key[1])

    def action_expand_all(self) -> None:
        self.fleet_tree.root.expand_all()

    def action_collapse_all(self) -> None:
        for node in self.fleet_tree.root.children:
            node.collapse_all()
