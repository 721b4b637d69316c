"""Pure codecs between bytes and plain objects: no sockets, files, clocks or aiocoap.

``senml`` decodes what boards send (RFC 8428); ``cbor`` is the one strict CBOR decoder every
gateway parser uses (SenML-CBOR, health reports, batches) and ``strict_json`` its JSON
counterpart, so that a byte string has one meaning wherever it arrives.
"""
