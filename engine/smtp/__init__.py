"""SMTP, the protocol (RFC 5321): what both our server and our client speak.

Owns the reply vocabulary (``reply``: the one ``Reply`` type, enhanced status
codes and their parser, the ``Stage`` a reply answers). The server's side: the
pure framing reader (``reader``: bytes in, events out), the dialogue as a pure
state machine (``server_dialogue``: bytes and answers in, replies and actions
out) and its settings (``server_config``), the asyncio listener that performs
the dialogue's actions (``server``), the handler seam a service plugs into
(``handler``) and the listener's self-signed certificate (``tls_cert``). The
client's side: the reply reader (``reply_reader``: bytes in, replies out) and
the client dialogue (``client``: replies in, commands and events out), both
without I/O (the asyncio adapter is ``smtp_out``). Both sides' connections
time their waits with one ``deadline.DeadlineTimer`` each.

May import: ``config``, ``engine.clock``, ``engine.sealing``. Never a service
(submission, delivery, store): services plug in through ``SmtpHandler``.

Invariants: the reader and the dialogue decide nothing about policy; every
reply the server sends comes from the handler or from the protocol itself.
"""
