"""DKIM (RFC 6376): keys, their sealed storage, and signing.

Owns key generation and the DNS records to publish (``keys``), the signer
(``signer``: relaxed/relaxed through OpenSSL, keys parsed once) and the
per-domain key lookup delivery signs with (``signing_keys``).

May import: ``engine.store`` (to read domains), ``engine.sealing``, the core.

Invariants: a private key is stored sealed and parsed once per (domain,
selector); the signer and acceptance read a header section the same way
(``engine.header_section``).
"""
