"""SMTP, the protocol (RFC 5321): what both our server and our client speak.

Owns the reply vocabulary (``handler.Reply``), the pure framing reader
(``reader``: bytes in, events out), the server dialogue as a pure state
machine (``server_dialogue``: bytes and answers in, replies and actions out)
and its settings (``server_config``), the asyncio listener that performs the
dialogue's actions (``server``), the handler seam a service plugs into
(``handler``) and the listener's self-signed certificate (``tls_cert``).

May import: ``config``, ``engine.clock``, ``engine.sealing``. Never a service
(submission, delivery, store): services plug in through ``SmtpHandler``.

Invariants: the reader and the dialogue decide nothing about policy; every
reply the server sends comes from the handler or from the protocol itself.
"""
