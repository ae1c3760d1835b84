"""`make bench`: not written yet — the benchmarks issue builds the suite. Exits non-zero so
nobody mistakes this for a measurement."""

import sys

if __name__ == "__main__":
    sys.exit("benchmarks are not written yet (see the benchmarks issue)")
