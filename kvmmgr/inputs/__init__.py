"""One input schema per action: typed form fields, and the CLI flags and API fields
generated from them (``cli.py``, ``api.py``)."""
