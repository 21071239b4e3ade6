"""Submission: tenants hand mail to the engine over authenticated SMTP.

Owns the ``SmtpHandler`` of the submission listener (``handler``): AUTH and
its throttle (``auth_throttle``, ``passwords``), the relay and sender rules
(``address_policy``), what a message becomes on acceptance (``acceptance``:
one message per recipient, headers added, suppression) and the durable
hand-off to the store (``spool``, group-committed).

May import: ``engine.smtp``, ``engine.store``, ``engine.records``, the core
(``engine.model``, ``engine.clock``, ``engine.header_section``).

Invariants: ``250`` only once the store has committed; nothing is relayed
without AUTH; a refusal is one Rejection record.
"""
