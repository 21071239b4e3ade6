"""Limits shared by the delivery processes: throttles (GCRA), connection slots,
counters and backoff state.

Owns the ``Limiter`` seam and its implementations: in-process by default,
Redis when ``redis.url`` is set, so every engine process and node keeps to
one set of limits. The arithmetic of a throttle is pure
(``engine.limits.throttle``); the implementations only keep its state.

May import: the core, ``config``. Never the scheduler, delivery or the edges.
"""
