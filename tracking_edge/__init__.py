"""tracking_edge: opens, clicks and unsubscribes on tenants' own domains.

Owns link rewriting and pixel insertion at send time, signed tokens, and the
lean ASGI app that serves the open pixel, click redirects and RFC 8058
one-click unsubscribe.
"""
