"""simpul's fleet manager and the ``simpul`` command line."""
