"""Delivery orchestration: ask the scheduler, transform, sign, hand to a deliverer, settle.

Owns the delivery service (``service``), the per-copy transformation before
signing (``transform.MessageTransform``), the seam to whatever sends bytes
(``transport.Deliverer``, implemented by ``smtp_out``), attempt outcomes
(``outcome``), the outcome an SMTP reply means (``reply_outcome``) and its
bounce classification (``bounce_classify``, with the categories and enhanced
status codes of ``bounce_category`` and the wording rules of
``bounce_rules``), what an outcome does to a
message (``settling``, ``retry``) and the operator's hand on the queue
(``queue_admin``).

May import: ``engine.scheduler``, ``engine.store``, ``engine.dkim``,
``engine.records``, ``engine.smtp`` (the reply vocabulary), the core. Never
``smtp_out``: the composition root injects the scheduler, the transform and
the deliverer.

Invariants: a message is settled only by the holder of its lease; an
unexpected error parks it as shunted, never drops it.
"""
