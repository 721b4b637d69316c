"""OSCORE (RFC 8613) between boards and the gateway: key material, sealed keys, contexts."""
