#!/usr/bin/env python3
"""Prints 'N passed, N failed[, N skipped]' summed over meson testlog.json files.

Usage: scripts/test-summary.py TESTLOG.json [TESTLOG.json...]
A Catch2 binary counts as its number of test cases (read from its own
summary line), any other test as one. A log that is missing (its run never
got to testing) counts as one failure.
"""
import json
import re
import sys

CATCH_ALL = re.compile(r"All tests passed \(\d+ assertions? in (\d+) test cases?\)")
CATCH_SOME = re.compile(r"test cases:\s+(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed")
CATCH_SKIP = re.compile(r"^SKIPPED-CASES: (\d+)$", re.M)


def count(entry):
    result = entry.get("result", "")
    out = entry.get("stdout", "") or ""
    if result == "SKIP":
        return 0, 0, 1
    skipped = sum(int(n) for n in CATCH_SKIP.findall(out))
    m = CATCH_ALL.search(out)
    if m and result == "OK":
        return int(m.group(1)) - skipped, 0, skipped
    m = CATCH_SOME.search(out)
    if m:
        return int(m.group(2)) - skipped, max(int(m.group(3)), 1 if result != "OK" else 0), skipped
    if result in ("OK", "EXPECTEDFAIL"):
        return 1, 0, 0
    return 0, 1, 0


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    passed = failed = skipped = 0
    for path in sys.argv[1:]:
        try:
            f = open(path)
        except OSError as e:
            print(f"test-summary: {e}", file=sys.stderr)
            failed += 1
            continue
        with f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                p, fl, s = count(json.loads(line))
                passed, failed, skipped = passed + p, failed + fl, skipped + s
    tail = f", {skipped} skipped" if skipped else ""
    print(f"{passed} passed, {failed} failed{tail}")


if __name__ == "__main__":
    main()
