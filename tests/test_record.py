"""dcmweb.record: the dataclass-like classes the client's modules are made of."""

from __future__ import annotations

import pytest

from dcmweb.record import FrozenRecordError, field, record, replace


@record(frozen=True)
class Point:
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.x < 0:
            raise ValueError("x below 0")


@record(frozen=True)
class Tag:
    name: str


@record
class Tally:
    name: str
    count: int = 0


def test_fields_defaults_and_a_fresh_factory_value_for_each_record() -> None:
    first, second = Point(1), Point(2, 5)
    assert (first.x, first.y, second.y) == (1, 0, 5)
    first.tags.append("a")
    assert second.tags == [] and Point(3).tags == []


def test_equality_and_hash_follow_the_fields_and_the_class() -> None:
    assert Point(1, 2) == Point(1, 2) and Point(1, 2) != Point(2, 1)
    assert len({Tag("a"), Tag("a"), Tag("b")}) == 2
    assert Tally("a") == Tally("a") and Tally("a") != ("a", 0)
    with pytest.raises(TypeError):
        hash(Tally("a"))  # a record that can change is not hashable, as a dataclass


def test_frozen_records_refuse_changes_and_mutable_ones_take_them() -> None:
    point = Point(1)
    with pytest.raises(FrozenRecordError, match="'x' of a frozen Point"):
        point.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del point.y  # type: ignore[misc]
    tally = Tally("a")
    tally.count += 1
    assert tally.count == 1


def test_post_init_runs_on_creation_and_on_replace() -> None:
    with pytest.raises(ValueError, match="below 0"):
        Point(-1)
    moved = replace(Point(1, 2, ["t"]), y=7)
    assert moved == Point(1, 7, ["t"])
    with pytest.raises(ValueError, match="below 0"):
        replace(moved, x=-5)


def test_repr_names_the_class_and_every_field() -> None:
    assert repr(Point(1)) == "Point(x=1, y=0, tags=[])"
    assert repr(Tally("a", 3)) == "Tally(name='a', count=3)"


def test_arguments_are_checked_like_a_dataclass_init() -> None:
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Tally("a", 1, 2)  # type: ignore[call-arg]
