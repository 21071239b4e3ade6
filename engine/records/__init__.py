"""What the engine tells: log records (the machine interface), the JSON record
log, Prometheus metrics and the operators' logging set-up.

May import: the core and the SMTP vocabulary (``engine.smtp.reply``): a record's
``response`` is a ``Reply``. Everything else but ``engine.smtp`` may import it.

Invariants: records are typed and shaped like KumoMTA's; logs never carry AUTH
data or message bodies.
"""
