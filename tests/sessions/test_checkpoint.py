"""The watermark never lets the checkpoint pass an event published but not yet projected."""

from __future__ import annotations

from promptline.sessions.checkpoint import Watermark


def test_the_checkpoint_follows_projected_writes() -> None:
    mark = Watermark()
    floor = mark.begin()
    mark.saw(5)
    assert mark.safe(own_floor=floor) == 5
    mark.end(floor, projected=True)
    assert mark.safe() == 5


def test_a_write_in_flight_holds_the_checkpoint_below_its_events() -> None:
    mark = Watermark()
    mark.saw(10)
    slow = mark.begin()  # will land above 10, not projected yet
    fast = mark.begin()
    mark.saw(12)  # the fast write got position 12 (the slow one 11)
    assert mark.safe(own_floor=fast) == 10
    mark.end(fast, projected=True)
    mark.saw(11)
    assert mark.safe(own_floor=slow) == 12
    mark.end(slow, projected=True)
    assert mark.safe() == 12


def test_a_write_whose_projection_failed_pins_the_checkpoint_until_released() -> None:
    mark = Watermark()
    mark.saw(3)
    failed = mark.begin()
    mark.saw(4)
    mark.end(failed, projected=False)
    later = mark.begin()
    mark.saw(5)
    assert mark.safe(own_floor=later) == 3
    mark.end(later, projected=True)
    covered = mark.pinned()
    mark.release(covered)
    assert mark.safe() == 5


def test_a_paused_watermark_stores_nothing() -> None:
    mark = Watermark()
    mark.saw(7)
    mark.paused = True
    assert mark.safe() is None
