"""The operator's console: a Textual terminal UI over the fleet (``simpul fleet console``).

``backend`` is what the console reads (a Protocol, and :class:`StoreBackend` over fleet.db);
``app`` the Textual app; ``screens/`` one module per screen; ``health`` the pure rules that
colour a board.
"""
