"""``simpul board``: the technician's serial tool (see ``fleet.board.cli``)."""
