"""Webhooks: the tenants' endpoints that are posted their records.

Pure parts: ``signature`` (the ``Penguin-Signature`` header), ``endpoints``
(which URLs and addresses a webhook may post to), ``payloads`` (which records
go to which webhook, in which bodies), ``retries`` (when a failed POST is
tried again). Adapters: ``client`` (one HTTP/1.1 POST over asyncio streams),
``dispatcher`` (record log → outbox), ``sender`` (outbox → endpoints) and
``service`` (both as one ``Service`` of a delivering process).
"""
