"""Submission: tenants hand mail to the engine, over authenticated SMTP or HTTP.

Owns the ``SmtpHandler`` of the submission listener (``handler``): AUTH and
its throttle (``auth_throttle``, ``passwords``), the relay and sender rules
(``address_policy``), the one acceptance path SMTP and the HTTP API share
(``acceptor``: checks, quotas, idempotency), what a message becomes on
acceptance (``acceptance``: one message per recipient, headers added,
suppression), the tenants' quotas (``quota``), messages composed from
structured fields (``composition``, ``templating``) and the durable hand-off to
the store (``spool``, group-committed).

May import: ``engine.smtp``, ``engine.store``, ``engine.records``, the core
(``engine.model``, ``engine.clock``, ``engine.header_section``).

Invariants: ``250`` (HTTP ``202``) only once the store has committed; nothing is relayed
without AUTH; a refusal is one Rejection record.
"""
