"""Reusable test peers: DNS server, SMTP sink. Also used by the benchmarks."""
