"""smtp_out: outgoing delivery to recipients' MX hosts.

Owns DNS/MX resolution and caching, SMTP client sessions and connection
reuse, TLS policy, and the classification of remote replies into bounce
categories. Imports only ``config`` and the ``engine`` core types.
"""
