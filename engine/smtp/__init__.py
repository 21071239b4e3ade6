"""SMTP, the protocol (RFC 5321): what both our server and our client speak.

Owns the reply vocabulary (``reply``: the one ``Reply`` type, enhanced status
codes and their parser, the ``Stage`` a reply answers), the pure framing
reader (``reader``: bytes in, events out), the server dialogue
(``server_session``), the asyncio listener around it (``server``), the handler
seam a service plugs into (``handler``) and the listener's self-signed
certificate (``tls_cert``);
and the client's side: the reply reader (``reply_reader``: bytes in, replies
out) and the client dialogue (``client``: replies in, commands and events
out), both without I/O (the asyncio adapter is ``smtp_out``).

May import: ``config``, ``engine.clock``, ``engine.sealing``. Never a service
(submission, delivery, store): services plug in through ``SmtpHandler``.

Invariants: the reader and the dialogue decide nothing about policy; every
reply the server sends comes from the handler or from the protocol itself.
"""
