"""The gateway's one SQLite file: every SQL statement the gateway runs lives in this package.

``schema`` (tables, versions and forward migrations, connections, transactions),
``writer`` (group commit of readings and health), ``registry`` (boards and gateway
statistics, read-only), ``outbox`` (an uplink's cursor over readings), ``batch_log`` (signed
batches, the chain state, batch uplinks' cursors) and ``budget`` (pruning, the disk budget).
"""
