"""Everything that takes stored readings upstream, each in a process of its own.

``delivery`` is the one loop every uplink runs (window, cursor, backoff with jitter) over a
``Sender``: ``jsonl`` (a JSON Lines file of readings), ``mqtt``, ``http`` and ``batch_file``
(signed batches). ``batcher`` signs readings into batches; ``registry`` names every process
and the function it runs; ``supervisor`` starts, restarts and stops them.
"""
