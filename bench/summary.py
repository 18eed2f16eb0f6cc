"""What the bench scripts' summaries share: the JSON lines a run printed, their medians."""
import json
import statistics


def rows(path):
    return [json.loads(line) for line in open(path)]


def median(rows, side, gen, key):
    """The median of `key` over `side`'s runs of generator `gen` (None if there were none)."""
    xs = [r["result"][key] for r in rows if r["server"] == side and r["generator"] == gen and key in r["result"]]
    return statistics.median(xs) if xs else None


def machine(cores, gib):
    return f"{cores} cores, {gib} GiB"


def load(argv):
    """From the summary's arguments (the run's output file, cores, GiB): its rows, a median over
    them, and the summary's start."""
    got = rows(argv[1])
    return got, (lambda side, gen, key: median(got, side, gen, key)), {"machine": machine(argv[2], argv[3])}
