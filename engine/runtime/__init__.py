"""The composition root and the engine as processes: the wiring of every
service and edge (``app``), the built-in roles as services (``roles``), the
serving of the edges' ASGI applications (``http_serving``), the supervisor and
its workers (``runner``), its restart decisions (``restarts``) and the
start-up checks of what a config names (``preflight``).

With ``engine.cli``, the only place that may import anything of the engine and
its edges; nothing below imports it.
"""
