"""A champion alias moved outside airloop: when the registry and the last recorded move disagree."""

from __future__ import annotations

import pytest

from airloop.promote.guard import ChampionCheck, unrecorded_move

pytestmark = pytest.mark.unit


def test_agreeing_registry_and_record_need_nothing():
    assert unrecorded_move("3", "3", move_in_progress=False) is None
    assert unrecorded_move(None, None, move_in_progress=False) is None


def test_a_move_in_progress_may_have_set_the_alias_before_its_record():
    assert unrecorded_move("4", "3", move_in_progress=True) is None


def test_an_alias_moved_by_hand_names_both_versions_and_the_way_back():
    why = unrecorded_move("1", "3", move_in_progress=False)
    assert why is not None
    assert "points at v1" in why and "made v3 the champion" in why
    assert why.endswith("v3 goes on serving until the alias is set back to v3")


def test_an_alias_set_before_any_recorded_promotion_or_removed_is_unrecorded_too():
    assert "recorded no promotion" in unrecorded_move("2", None, move_in_progress=False)
    assert "removed outside airloop" in unrecorded_move(None, "2", move_in_progress=False)


def test_scoring_serves_the_registry_unless_its_champion_is_unrecorded():
    agreed = ChampionCheck(registry="3", recorded="3", aliases={"champion": "3"}, unrecorded=None)
    assert agreed.serve == "3"
    moved = ChampionCheck(registry="1", recorded="3", aliases={"champion": "1"}, unrecorded="moved")
    assert moved.serve == "3"
    # Set by hand before any promotion: nothing airloop promoted, so nothing to serve.
    assert ChampionCheck(registry="1", recorded=None, aliases={}, unrecorded="set").serve is None
