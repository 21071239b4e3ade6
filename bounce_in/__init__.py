"""bounce_in: inbound SMTP for bounce and feedback-loop domains.

Owns DSN (RFC 3464) and ARF (RFC 5965) parsing, VERP token decoding and
their classification; reports results to the engine as records.
"""
