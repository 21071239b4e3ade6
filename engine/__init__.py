"""PenguinMails engine: accept, spool, schedule and record.

Glossary (one vocabulary across the code base):

- **tenant**: a customer of the platform; owns sending domains, SMTP users,
  suppressions and messages.
- **sending domain**: a domain a tenant may send from; carries a DKIM key.
- **submission**: one SMTP transaction (or HTTP injection): one body, one
  envelope sender, one or more recipients. Its body is stored once.
- **message**: one recipient of a submission, queued and delivered on its own.
  Its id is ``<submission id>-<n>``.
- **queue** (scheduled queue): ``campaign:tenant@domain``, the KumoMTA naming;
  the campaign comes from the ``X-Campaign`` header (stripped at acceptance).
- **site**: a destination derived from its MX host set (MX rollup).
- **provider**: a named group of sites (google, yahoo, ...).
- **source**: an egress IP address with its EHLO name; **pool**: a named set
  of sources.
- **lane**: source x site, the unit of connection and rate limits.
- **return path**: the envelope sender a message goes out with,
  ``b-<token>@bounces.<From domain>``, the token naming the message
  (``engine.return_path``); the submitted sender stays in the records.
- **attempt**: one try at delivering a message; **outcome**: its result.
- **record**: a typed log event (Reception, Delivery, Bounce, ...), the
  machine interface of the engine.
- **lease**: a claim on a message by a delivery worker, until a deadline that
  the running attempt keeps renewing, named by the claim's **lease token**;
  an expired lease returns the message to the queue.
"""
