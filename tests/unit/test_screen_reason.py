"""What `lethe erase` says about a surrogate the screen replaced."""

from __future__ import annotations

from core.cli.erase_cmd import screen_reason
from core.spare.report import SurrogateScreen, SurrogateTried


def _record(first: SurrogateTried) -> SurrogateScreen:
    return SurrogateScreen(concept="heart", kind="object", chosen="triangle", named=False, switched=True,
                           seconds=1.0, tried=[first, SurrogateTried(surrogate="triangle", confused=0.0, images=8,
                                                                     tangled=0.0625, tangled_with="star")])


def test_a_tangled_surrogate_names_its_neighbour() -> None:
    said = screen_reason(_record(SurrogateTried(surrogate="circle", confused=0.0, images=8, tangled=0.1875,
                                                tangled_with="square")))
    assert said == ("the judge labels 0% of the base model's circle images heart; circle and square cross in 19% "
                    "of their base images")


def test_without_the_neighbourhood_only_the_confusion_is_said() -> None:
    said = screen_reason(_record(SurrogateTried(surrogate="star", confused=0.75, images=8)))
    assert said == "the judge labels 75% of the base model's star images heart"
