"""Pooling two judge draws and telling an uncertain verdict from a settled one (core.evaluation.evidence)."""

from __future__ import annotations

from core.evaluation.evidence import (
    concept_evidence,
    pool_evidence,
    retention_evidence,
    sequential_evidence,
    uncertain_verdicts,
)
from core.evaluation.evidence_schema import JudgeEvidence, LostImage


def _evidence(n_forget: int, recognized: int, n_keep: int, base_ok: int, erased_ok: int, seed0: int) -> JudgeEvidence:
    concept = concept_evidence("circle", "object", "square", labels=["circle", "square"],
                               prompts=["a circle"] * n_forget, seeds=list(range(seed0, seed0 + n_forget)),
                               recognized_base=n_forget, recognized_erased=recognized)
    kept = retention_evidence("same-kind", "object", ["square"], prompts=["a square"] * n_keep,
                              seeds=list(range(seed0 + 100, seed0 + 100 + n_keep)),
                              correct_base=base_ok, correct_erased=erased_ok)
    return JudgeEvidence(judge={"name": "t"}, excluded_training_prompts=1, concepts=[concept], retention=[kept],
                         steps=10, guidance_scale=5.0, images=2 * (n_forget + n_keep), seconds=1.0,
                         judge_seconds=0.5, vocabulary="declared")


def test_pooled_counts_add_and_rates_are_recomputed() -> None:
    pooled = pool_evidence(_evidence(6, 1, 4, 4, 3, 0), _evidence(6, 0, 4, 3, 3, 1000))
    c, r = pooled.concepts[0], pooled.retention[0]
    assert (c.images, c.recognized_erased, c.ua) == (12, 1, round(11 / 12, 4))
    assert c.seeds[:6] == list(range(6)) and c.seeds[6:] == list(range(1000, 1006))
    assert (r.images, r.correct_base, r.correct_erased, r.retention) == (8, 7, 6, round((6 / 8) / (7 / 8), 4))
    assert pooled.images == 40 and pooled.seconds == 2.0
    assert r.retention_interval is not None and r.retention_interval[1] - r.retention_interval[0] < 1.0


def test_an_uncertain_failure_is_listed_and_a_clear_one_is_not() -> None:
    # 3 of 4 kept (retention 0.75): below 0.9, but 4 images cannot rule 0.9 out.
    small = _evidence(60, 0, 4, 4, 3, 0)
    assert uncertain_verdicts(small, 0.9, 0.9) == ["retention:same-kind:object"]
    # 30 of 60 kept against a base of 60: clearly broken, more images would not turn it.
    clear = _evidence(60, 0, 60, 60, 30, 0)
    assert uncertain_verdicts(clear, 0.9, 0.9) == []
    # UA 5/6 is short of 0.95 but uncertain; 0/6 erased (UA 0) is a clear failure.
    assert uncertain_verdicts(_evidence(6, 1, 60, 60, 60, 0), 0.95, 0.9) == ["ua:circle"]
    assert uncertain_verdicts(_evidence(6, 6, 60, 60, 60, 0), 0.95, 0.9) == []


def test_an_uncertain_pass_is_listed_and_a_settled_one_is_not() -> None:
    # 6 of 6 erased passes 0.9 on the point estimate, but its interval (from 0.61) still allows a failing UA.
    assert uncertain_verdicts(_evidence(6, 0, 60, 60, 60, 0), 0.9, 0.9) == ["ua:circle"]
    # 60 of 60 erased and 60 of 60 kept: both settled.
    assert uncertain_verdicts(_evidence(60, 0, 60, 60, 60, 0), 0.9, 0.9) == []
    # Retention 2.0 from 2 of 6 against 1 of 6 passes on the point estimate and is far from settled.
    assert uncertain_verdicts(_evidence(60, 0, 6, 1, 2, 0), 0.9, 0.9) == ["retention:same-kind:object"]


def test_uncertain_passes_can_be_left_to_a_later_sample() -> None:
    # passes=False lists failures that could still pass, and no pass that could still fail.
    assert uncertain_verdicts(_evidence(6, 0, 60, 60, 60, 0), 0.9, 0.9, passes=False) == []
    assert uncertain_verdicts(_evidence(60, 0, 6, 1, 2, 0), 0.9, 0.9, passes=False) == []
    assert uncertain_verdicts(_evidence(60, 0, 4, 4, 3, 0), 0.9, 0.9, passes=False) == ["retention:same-kind:object"]
    assert uncertain_verdicts(_evidence(6, 1, 60, 60, 60, 0), 0.95, 0.9, passes=False) == ["ua:circle"]
    # A sequential sample that settles failures only stops at once on a clean-looking first draw.
    model = _Model()
    evidence, extensions = sequential_evidence(model.draw, 0.9, 0.5, max_images=10_000, settle_passes=False)
    assert extensions == 0 and model.calls == [(0, 1, None)] and evidence.concepts[0].images == 6


def test_a_clear_failure_settles_its_decision() -> None:
    # Circle is still drawn in all 60 images: the UA decision has failed whatever star's 6 images would show.
    failed = _evidence(60, 60, 60, 60, 60, 0)
    star = concept_evidence("star", "object", "square", labels=["star", "square"], prompts=["a star"] * 6,
                            seeds=list(range(6)), recognized_base=6, recognized_erased=0)
    assert uncertain_verdicts(failed.model_copy(update={"concepts": [*failed.concepts, star]}), 0.9, 0.9) == []
    # The decisions are separate: a clear retention failure leaves an uncertain UA pass listed (it decides
    # whether the rollback also escalates erasure), and a clear UA failure an uncertain retention pass.
    assert uncertain_verdicts(_evidence(6, 0, 60, 60, 30, 0), 0.9, 0.9) == ["ua:circle"]
    assert uncertain_verdicts(_evidence(60, 60, 4, 4, 4, 0), 0.9, 0.9) == ["retention:same-kind:object"]


def test_a_verdict_the_extension_drew_nothing_for_keeps_its_numbers() -> None:
    first = _evidence(6, 1, 4, 4, 3, 0)
    # An extension drawn for the retention verdict only: the concept has no images in it.
    only_retention = _evidence(0, 0, 8, 8, 8, 1000)
    pooled = pool_evidence(first, only_retention)
    assert pooled.concepts[0] == first.concepts[0]
    assert (pooled.retention[0].images, pooled.retention[0].correct_erased) == (12, 11)
    assert pooled.images == first.images + 16


def test_plan_groups_name_the_verdicts_they_feed() -> None:
    from core.evaluation.evidence import _verdict_name

    assert _verdict_name("forget:circle") == "ua:circle"
    assert _verdict_name("same-kind:object") == "retention:same-kind:object"
    assert _verdict_name("other-kind:style") == "retention:other-kind:style"


def test_pooled_evidence_keeps_every_lost_image() -> None:
    first, more = _evidence(6, 0, 4, 4, 3, 0), _evidence(6, 0, 4, 4, 2, 1000)
    first.retention[0].lost = [LostImage(concept="square", prompt="a square", seed=100, erased_label="circle")]
    more.retention[0].lost = [LostImage(concept="square", prompt="a square", seed=s, erased_label="circle")
                              for s in (1100, 1101)]
    assert [i.seed for i in pool_evidence(first, more).retention[0].lost] == [100, 1100, 1101]


class _Model:
    """Draws as a judge would see an erased model that never draws the concept and keeps every other one."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, set[str] | None]] = []

    def draw(self, k: int, scale: int, only: set[str] | None) -> JudgeEvidence:
        self.calls.append((k, scale, only))
        full = _evidence(6 * scale, 0, 4 * scale, 4 * scale, 4 * scale, seed0=10_000 * k)
        if only is None:
            return full
        # An extension draws for the open verdicts only; the others get no images in it.
        concepts = full.concepts if "ua:circle" in only else []
        retention = full.retention if "retention:same-kind:object" in only else []
        images = 2 * (sum(c.images for c in concepts) + sum(r.images for r in retention))
        return full.model_copy(update={"concepts": concepts, "retention": retention, "images": images})


def test_a_sequential_sample_draws_until_its_verdicts_settle() -> None:
    model = _Model()
    evidence, extensions = sequential_evidence(model.draw, 0.9, 0.5, max_images=10_000)
    # 6 of 6 cannot rule a UA below 0.9 out (interval from 0.61), nor 12 or 24 of them; 48 of 48 can (0.926).
    # 4 of 4 kept settles a retention of 0.5 at once (interval from 0.51): it gets no further images.
    assert extensions == 3 and evidence.draws == 4
    assert [scale for _, scale, _ in model.calls] == [1, 1, 2, 4]
    assert all(only == {"ua:circle"} for _, _, only in model.calls[1:])
    assert evidence.concepts[0].images == 48 and evidence.retention[0].images == 4
    assert len(set(evidence.concepts[0].seeds)) == 48, "each draw on seeds of its own"
    assert evidence.concepts[0].ua_interval[0] >= 0.9


def test_a_sequential_sample_stops_at_its_image_budget() -> None:
    model = _Model()
    evidence, extensions = sequential_evidence(model.draw, 0.9, 0.5, max_images=20)
    # The first draw has 20 images (both models), the second 12 more: then the budget is exceeded.
    assert extensions == 1 and evidence.draws == 2 and evidence.concepts[0].images == 12
    one, _ = sequential_evidence(_Model().draw, 0.9, 0.5, max_images=1)
    assert one.draws == 1 and one.concepts[0].images == 6, "a budget below the first draw: the first draw only"


class _TwoConcepts(_Model):
    """As _Model, with a second erased concept (star) that is just as cleanly gone."""

    def draw(self, k: int, scale: int, only: set[str] | None) -> JudgeEvidence:
        one = super().draw(k, scale, only)
        if only is not None and "ua:star" not in only:
            return one
        star = concept_evidence("star", "object", "square", labels=["star", "square"], prompts=["a star"] * 6 * scale,
                                seeds=list(range(20_000 * k, 20_000 * k + 6 * scale)),
                                recognized_base=6 * scale, recognized_erased=0)
        return one.model_copy(update={"concepts": [*one.concepts, star], "images": one.images + 2 * star.images})


def test_the_image_budget_is_per_erased_concept() -> None:
    # 32 images in the first draw (two concepts, one retention group): over a budget of 20, but not of 2 x 20.
    model = _TwoConcepts()
    evidence, extensions = sequential_evidence(model.draw, 0.9, 0.5, max_images=20)
    assert model.calls[0] == (0, 1, None) and evidence.images > 20
    assert extensions == 1 and {c.concept: c.images for c in evidence.concepts} == {"circle": 12, "star": 12}
    assert model.calls[1][2] == {"ua:circle", "ua:star"}
