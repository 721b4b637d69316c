"""Signed releases of the board application on the gateway: the cache (:mod:`.cache`)."""
