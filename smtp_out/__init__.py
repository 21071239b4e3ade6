"""smtp_out: outgoing delivery to recipients' MX hosts.

Owns DNS/MX resolution and caching, SMTP client sessions (``client_session``
drives ``engine.smtp.client``'s pure dialogue over ``connection``'s socket)
and connection reuse, and TLS policy. Imports only ``config`` and ``engine``
(protocol, core types, the delivery seam and outcomes).
"""
