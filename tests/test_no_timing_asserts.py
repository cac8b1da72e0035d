"""Speed belongs in benchmarks/ (ratios against a baseline in the same run), never in a test.

Timers may bound a wait (the browser test polls until a deadline); no assertion may compare an
elapsed time.
"""
import re

from .conftest import REPO

TIMED_ASSERT = re.compile(
    r"^\s*assert\b.*(\b(perf_counter|monotonic|process_time)\(|\btime\.time\(|\belapsed\b|\bduration\b)")


def test_no_assertion_compares_elapsed_time():
    offenders = [f"{path.name}:{no}: {line.strip()}"
                 for path in sorted((REPO / "tests").glob("test_*.py"))
                 if path.name != "test_no_timing_asserts.py"
                 for no, line in enumerate(path.read_text().splitlines(), 1)
                 if TIMED_ASSERT.search(line)]
    assert not offenders, "timing assertions (move speed to benchmarks/):\n" + "\n".join(offenders)


def test_the_pattern_catches_the_forms_it_is_for():
    for line in ("    assert time.perf_counter() - start < 30",
                 "    assert meta['hit'] and time.perf_counter() - t0 < 1.0",
                 "    assert elapsed < 2", "assert time.time() - t < 5"):
        assert TIMED_ASSERT.search(line), line
    assert not TIMED_ASSERT.search("    while time.monotonic() < end:")
