"""Where boards' requests come in: CoAP resources, request checks, and the writer process.

``resources`` (aiocoap ``Resource`` classes and :func:`~gateway.intake.resources.build_site`)
translate CoAP messages; ``requests`` holds the plain checks and decoders they call;
``writer_link`` carries accepted requests to the writer process (``writer``), which decodes
and commits them through :mod:`gateway.store` and answers each only once it is on disk.
"""
