"""The listing's pure parts, without HTTP: which same-second groups straddle a page boundary,
and the one page that covers a group with a sentinel on each side."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.listing import Group, covering_page, group_seen_whole, straddling_groups
from archiver.model import InvalidItem, Item, Page, Recording

BASE = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def rec(i: int, at: datetime) -> Recording:
    return Recording(f"RE{i:04d}", "AC1", None, at, 1.0, "wav", {})


def listing(gaps: list[int], invalid_at: set[int]) -> list[Item]:
    """Newest first: each gap is the seconds to the previous item (0 = the same second)."""
    at, items = BASE, []
    for i, gap in enumerate(gaps):
        at -= timedelta(seconds=gap)
        items.append(InvalidItem(f"RE{i:04d}", "bad", {}) if i in invalid_at else rec(i, at))
    return items


def pages_of(items: list[Item], size: int) -> list[tuple[int, list[Item]]]:
    return [(n, items[n * size : n * size + size]) for n in range((len(items) + size - 1) // size)]


def expected(items: list[Item], size: int, since: datetime) -> list[Group]:
    """The definition, written plainly: runs of equal ``date_created`` among the recordings."""
    recs = [(pos, x) for pos, x in enumerate(items) if isinstance(x, Recording)]
    groups, i = [], 0
    while i < len(recs):
        j = i
        while j + 1 < len(recs) and recs[j + 1][1].date_created == recs[i][1].date_created:
            j += 1
        first, last = recs[i][0], recs[j][0]
        at = recs[i][1].date_created
        if first // size != last // size and at >= since:
            lo = recs[i - 1][0] if i > 0 else 0
            hi = recs[j + 1][0] if j + 1 < len(recs) else None
            groups.append(Group(at, lo, hi, recs[-1][0] + 1))
        i = j + 1
    return groups


@settings(max_examples=300, deadline=None)
@given(
    gaps=st.lists(st.sampled_from([0, 0, 0, 1, 2, 60]), min_size=1, max_size=60),
    size=st.integers(1, 7),
    since_back=st.integers(0, 400),
    invalid=st.sets(st.integers(0, 59), max_size=5),
)
def test_straddling_groups_are_exactly_the_runs_across_a_page_boundary(
    gaps: list[int], size: int, since_back: int, invalid: set[int]
) -> None:
    items = listing(gaps, invalid)
    since = BASE - timedelta(seconds=since_back)
    got = straddling_groups(pages_of(items, size), size, since)
    assert got == expected(items, size, since)
    for group in got:
        # the one page asked for covers the group and its sentinels
        page_no, page_size = covering_page(group.lo, group.top)
        assert page_no * page_size <= group.lo
        assert group.top <= page_no * page_size + page_size - 1


@given(lo=st.integers(0, 5000), width=st.integers(0, 400))
def test_covering_page_is_one_offset_page_holding_the_range(lo: int, width: int) -> None:
    page, size = covering_page(lo, lo + width)
    assert size >= width + 1
    assert page * size <= lo and lo + width < page * size + size


def test_a_group_is_seen_whole_only_between_a_newer_and_an_older_recording() -> None:
    at = BASE - timedelta(seconds=5)
    newer, older = rec(1, BASE), rec(9, at - timedelta(seconds=1))
    members = [rec(i, at) for i in range(2, 5)]
    group = Group(at, lo=3, hi=7, end=8)

    def page(items: list[Item], last: bool = False) -> Page:
        return Page(1, len(items), 99, 9, items, last)

    assert group_seen_whole(page([newer, *members, older]), 1, group)
    assert not group_seen_whole(page([*members, older]), 1, group)  # no newer one before
    assert not group_seen_whole(page([newer, *members]), 1, group)  # nor an older one after
    # the list's end is the sentinel only for a group that ran to the end
    to_end = Group(at, lo=3, hi=None, end=7)
    assert group_seen_whole(page([newer, *members], last=True), 1, to_end)
    assert not group_seen_whole(page([newer, *members], last=True), 1, group)
    assert group_seen_whole(page([*members, older]), 0, group)  # page 0: the list's start
