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
