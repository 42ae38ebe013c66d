"""The long rows of the reliability table (a child process, or a whole tune or regress run): the harness of
tests/test_reliability.py, in a module of its own so that xdist can give them to the other worker."""

from __future__ import annotations

import pytest
from test_reliability import CASES, is_long, places, run_case  # noqa: F401 - places is the module's fixture

pytestmark = pytest.mark.tf

LONG = [c for c in CASES if is_long(c)]


def test_the_long_rows_are_a_minority_of_the_table():
    assert 0 < len(LONG) < len(CASES) // 4


@pytest.mark.parametrize("case", LONG, ids=[c["id"] for c in LONG])
def test_long_case(case, places, tmp_path, monkeypatch, capsys):  # noqa: F811 - the fixture imported above
    run_case(case, places, tmp_path, monkeypatch, capsys)
