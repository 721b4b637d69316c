"""The simpul gateway daemon: CoAP resources, the durable store, uplinks."""
