"""The stats rollup at work: the service that keeps it (``service.StatsRollup``) and
``service.read_stats``, how the API and the CLI read it. The counting and the
queries themselves are pure, in ``engine.stats``."""
