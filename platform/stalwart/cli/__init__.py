"""The ``stalwart`` command line: dlq, breaker, limits, switch, status, dev."""
