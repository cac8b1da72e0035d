"""Speed belongs in benchmarks/ (ratios against a baseline in the same run), never in a test.

Timers may bound a wait (the browser test polls until a deadline); no assertion may compare an
elapsed time. The timer names are assembled from parts so that this file holds no such line.
"""
import re

from .conftest import REPO

_CLOCKS = ["perf" + "_counter", "mono" + "tonic", "process" + "_time"]
_CHECK = "as" + "sert"
TIMED_CHECK = re.compile(
    rf"^\s*{_CHECK}\b.*(\b({'|'.join(_CLOCKS)})\(|\btime\.time\(|\belapsed\b|\bduration\b)")


def test_no_check_compares_elapsed_time():
    offenders = [f"{path.name}:{no}: {line.strip()}"
                 for path in sorted((REPO / "tests").glob("test_*.py"))
                 for no, line in enumerate(path.read_text().splitlines(), 1)
                 if TIMED_CHECK.search(line)]
    assert not offenders, "timing checks (move speed to benchmarks/):\n" + "\n".join(offenders)


def test_the_pattern_catches_the_forms_it_is_for():
    clock = _CLOCKS[0]
    for line in (f"    {_CHECK} time.{clock}() - start < 30",
                 f"    {_CHECK} meta['hit'] and time.{clock}() - t0 < 1.0",
                 f"    {_CHECK} elapsed < 2", f"{_CHECK} time.time() - t < 5"):
        assert TIMED_CHECK.search(line), line
    assert not TIMED_CHECK.search(f"    while time.{_CLOCKS[1]}() < end:")
