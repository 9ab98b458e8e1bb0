"""core.spare.samples.swapped: the one word-swap the neighbours' retain prompts and the surrogate gap use."""

from core.spare.samples import mentions, swapped


def test_swapped_replaces_whole_words_only_in_any_case() -> None:
    assert swapped("a Circle image, circles and encircled circle", "circle", "square") == (
        "a square image, circles and encircled square")


def test_swapped_to_nothing_leaves_no_double_space() -> None:
    assert swapped("the striped  circle shape", "circle", "") == "the striped shape"


def test_mentions_whole_words_only() -> None:
    assert mentions("a Circle image", "circle") and not mentions("encircled circles", "circle")
    assert not mentions("{object} , striped", "") and not mentions(" , striped", " ")
