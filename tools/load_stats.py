"""What the load tests (comments_load.py, jobs_load.py) share: the nearest-rank percentile of their latencies."""


def percentile(xs, p):
    """The p-th percentile of xs by nearest rank (NaN when empty)."""
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
