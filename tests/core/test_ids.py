import pytest

from promptline.core.ids import id_timestamp_ms, new_id


def test_ids_sort_in_creation_order_even_within_one_millisecond() -> None:
    ids = [new_id() for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_id_has_prefix_and_26_char_ulid_body() -> None:
    value = new_id("evt_")
    assert value.startswith("evt_")
    assert len(value) == 4 + 26


def test_id_timestamp_is_recoverable() -> None:
    import time

    before = time.time_ns() // 1_000_000
    value = new_id("x_")
    after = time.time_ns() // 1_000_000
    assert before <= id_timestamp_ms(value) <= after


def _reference_encode(value: int) -> str:
    """ULID text of a 128-bit value, one 5-bit character at a time (the definition)."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    return "".join(alphabet[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def _isolate_id_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start from "no id made yet", and put the generator's real state back afterwards."""
    from promptline.core import ids

    monkeypatch.setattr(ids, "_last_ms", 0)
    monkeypatch.setattr(ids, "_last_rand", 0)
    monkeypatch.setattr(ids, "_last_head", ids._last_head)


def test_id_text_is_crockford_base32_of_time_and_random_part(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from promptline.core import ids

    # A fixed clock and random source: the id must be exactly the 128-bit value's encoding,
    # and the following ids in the same millisecond that value plus one, two, ...
    ms = 0x0123_4567_89AB
    rand = (1 << 80) - 3  # crosses the cached-prefix boundary and then overflows
    _isolate_id_state(monkeypatch)
    monkeypatch.setattr(ids.time, "time_ns", lambda: ms * 1_000_000)
    monkeypatch.setattr(ids.os, "urandom", lambda n: rand.to_bytes(n, "big"))
    values = [ids.new_id() for _ in range(4)]
    assert values[0] == _reference_encode((ms << 80) | rand)
    assert values[1] == _reference_encode((ms << 80) | (rand + 1))
    assert values[2] == _reference_encode((ms << 80) | (rand + 2))
    # 2**80 ids in one millisecond: the clock moves on and a new random part is drawn.
    assert values[3] == _reference_encode(((ms + 1) << 80) | rand)
    assert [id_timestamp_ms(v) for v in values] == [ms, ms, ms, ms + 1]


def test_id_text_matches_reference_for_random_values_across_prefix_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import random

    from promptline.core import ids

    rng = random.Random(7)
    for _ in range(300):
        ms = rng.getrandbits(48)
        # Near a 2**20 boundary, so the increment also changes the cached first 22 characters.
        rand = (rng.getrandbits(60) << 20) | ((1 << 20) - 1 - rng.getrandbits(1))
        _isolate_id_state(monkeypatch)
        monkeypatch.setattr(ids.time, "time_ns", lambda ms=ms: ms * 1_000_000)
        monkeypatch.setattr(ids.os, "urandom", lambda n, r=rand: r.to_bytes(n, "big"))
        got = [ids.new_id("p_") for _ in range(3)]
        assert got == [f"p_{_reference_encode((ms << 80) | (rand + i))}" for i in range(3)]
