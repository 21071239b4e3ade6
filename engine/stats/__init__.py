"""Stats: counters per tenant, hour, campaign, sending domain and provider.

- ``counts``: pure; which metric a record counts toward (``Tally``), the rollup
  rows (``StatCount``) and the metric names.
- ``report``: pure; the query (``StatsQuery``: dimensions and filters) and the
  rows it answers, with their rates.
- ``engine.rollup.service`` (not pure, so not here): the ``stats`` service
  that follows the record log and applies its counts to the store with its
  cursor in one transaction, and ``read_stats``, which the API and the CLI
  both answer through.

Vocabulary: a *bucket* is an hour (POSIX seconds of its start, UTC); a
*dimension* is what rows are grouped by (campaign, domain, provider, hour,
day); *domain* is the sending domain (the sender's), *provider* the
recipient's MX provider group as shaping names it (``other`` when none).
"""
