"""Signed, hash-chained batches: their format, the gateway's keys, and their verification.

What a city's data platform runs (``simpul verify``) lives here, so none of it imports the
CoAP stack: ``format`` (COSE_Sign1 batches), ``keys`` (the gateway's Ed25519 identity and its
rotation), ``verify`` (key sets and the chain verifier) and ``cli`` (``simpul verify``).
"""
