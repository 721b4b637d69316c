"""The gateway as a systemd service on a Raspberry Pi.

* :mod:`.notify`: ``sd_notify`` over ``$NOTIFY_SOCKET`` (READY, STATUS, WATCHDOG,
  STOPPING) and the watchdog that pings only while the daemon is healthy;
* :mod:`.journal`: log lines with ``<N>`` syslog priorities when stderr is the journal;
* :mod:`.unit`: the unit file and the sysusers.d snippet, as text (pure);
* :mod:`.install`: ``simpul gateway install`` and ``uninstall``.
"""
