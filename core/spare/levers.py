"""Escalation levers of the erase-until-verified loop: the config change each makes, and their order.

A round whose UA is short escalates by the next lever in `SPARE_LEVERS` (or `ESD_LEVERS`); a round that broke
retention is rolled back and retried with the next change in `RETENTION_LEVERS` (keeping the escalation it added
where that erased enough). `lever_change` is the one place a lever's name becomes a config change (the loop and
`bench/levers.py` both go through it).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from core.spare.specs import EsdConfig, SpareConfig

# Escalation levers, tried in this order on a round whose UA is short (each is kept while retention holds).
# Repulsion comes first: on the development models, at the defaults, it is the lever that erases what a round left
# (bench/results/levers_dev_seed23_defaults.json: alone on a default round it lifted UA on each of four targets,
# mean 0.713 -> 1.000, where capacity gave +0.10), and in the loop (erasure_dev_seed{23,29}_{capacity,repel}_first
# .json) capacity erased less than repulsion from the same first round on all three targets that escalated:
# seed-23 circle and striped stayed short with capacity (the verification's grid UA 0.60, 0.67) — circle then
# certified in two rounds instead of three, striped certified (UA 1.000, CRA 93.0 %) instead of three rounds ending
# at UA 0.75 (repulsion on top of capacity had broken CRA there) —, and seed-29 striped's kept round went from grid
# UA 0.917 to 1.000. Repulsion costs retention (IRA -10.9 points alone on those four seed-23 targets). A round it
# breaks while erasing enough keeps it, at double retain weight (core.spare.rounds): on the seed-23 build striped's
# round 3 was then certified where the former rollback, without repulsion, left it short (the verification's grid
# UA 0.833; with capacity instead, 0.667: erasure_dev_seed23_striped_round_{retain2,repel1_retain2}.json,
# erasure_dev_seed23_rollback_capacity.json). A round it breaks while still short rolls back to the retain
# levers, with capacity next.
# The rest keep the order of what each did alone to a short round on the first testbed (bench/levers.py,
# bench/results/levers.json: 8 of 100 steps, so that round 1 falls short; mean UA change capacity +0.46, anchor
# +0.18, timesteps +0.13, contexts +0.01, placement -0.07). Steps (+0.46) come last: they cost the most retention
# there, double the round's training time, and repeat while the budget lasts, so a lever after them would never
# be reached.
SPARE_LEVERS = ("repel", "capacity", "anchor", "timesteps", "contexts", "placement", "steps")
# Tried, in this order, on a round that broke retention (rolled back to the last round that kept it). A surrogate
# switch comes first only where the lost images became the surrogate (core.spare.rounds). Switching as well where
# they did not (after the neighbours, before the weight) was measured on the development models
# (bench/results/erasure_dev_switch_on_loss.json): each of its three switches broke retention further (dev
# circle, seed-23 triangle and heart; same-kind retention down to 0.60-0.88) where more weight had recovered two.
# Then the forget term anchored on the surrogate's own generations (as the "anchor" escalation) and, on every
# further rollback, double the retain weight. Measured on the development models, each alone on a default round
# (bench/levers.py --start '{}' --levers neighbours,retain,anchor: levers_dev_retention.json,
# levers_dev_seed29_retention.json), mean IRA / CRA change in points: anchor +0.4 / +1.5 and +1.0 / 0.0, retain
# -0.4 / +1.5 and +0.9 / -0.8, retain prompts in the forget prompts' phrasings with the target swapped for its
# neighbours (`neighbours`, retain_neighbours 0 -> 1) -1.1 / -1.5 and -4.0 /
# -2.3 (seed-29 checkered CRA 97.1 -> 85.7, heart IRA 91.4 -> 82.9 where anchor and retain gave 97.1):
# `neighbours` is in neither order. Anchoring escalates UA as well; where it broke retention it is not applied
# again to win it back (`retain_more`).
# The default config anchors the forget term fully from the first round (`forget_anchor` "surrogate"), so the
# anchor lever only acts on a request that sets "concept" or "both"; at the default a short round goes from
# repel to capacity and a rollback to the retain weight. Measured in the loop on the development models,
# forget_anchor "surrogate" against "both" (bench/erasure.py --methods spare-loop: erasure_dev_anchored.json
# against erasure_dev_half_anchored.json and erasure_dev_anchor_first.json): as many certified (6/6, 5/6) in fewer
# rounds (1.17 -> 1.00, 2.00 -> 1.83); the rounds it saved were retention rollbacks (development circle, seed-29
# dotted and checkered), the one it added an escalation (seed-29 striped: capacity, then repel).
RETENTION_LEVERS = ("anchor", "retain")
# The saliency pool a "placement" escalation widens to, and the one "narrow" confines the adapter to. Narrow is
# in neither order: applied alone to a default round on a development model (bench/levers.py,
# levers_dev_seed23_defaults.json) it lowered UA by 0.05 on average and moved retention either way (IRA -7.3
# points for triangle, +9.5 for heart).
# The retain-span projection (core.spare.projection) is on by default at 0.99: against the defaults without it
# (bench/levers.py --start '{"retain_projection": 0}' … --levers project: levers_dev_project.json,
# levers_dev_seed23_project.json, levers_full_project.json) it moved the development models' means by UA +0.00 /
# +0.06, IRA +0.7 / +1.5 and CRA +0.7 / +1.1 points and left the first testbed at 1.000 / 100 % / 100 %; 0.999
# (`project` from 0.99) lowered them again (levers_*_proj99.json); `project` is in neither order.
# Retain prompts over the concept's images (`cross`: retain_on_forget 0 -> 0.25 -> 0.5) are in neither order:
# from the first round, in the loop on the development models (erasure_dev_retain_on_forget.json against
# erasure_dev_projection.json), they certified the development testbed in one round each (6/6, 1.00 rounds against
# 1.33) but the seed-23 build 2/6 against 5/6 (striped's grid UA 0.58, circle's 0.80: kept prompts over the
# concept's look hold back the erasure of a style), and the retention it misses (heart, triangle) stayed missed.
# Delivering only the text pathway of a round's training (`text`: deliver_pool trained -> cross_kv) is in neither
# order. The engine's erasure of a shape lives on that pathway, and the image-side modules trained with it add to
# its same-kind loss (bench/retention_anatomy.py, retention_anatomy_dev_seed23{,b}_heart.json); scaled down, the
# text pathway alone still trades erasure for retention along one curve (--strengths in the same file: UA 0.95 at
# IRA 91.8 %, 0.60 at 97.3 %), and trained on alone to a full erasure it loses as much as the whole change. Tried
# before the retain weight, in the loop on a rebuilt seed-23 development model, against the order above on
# that build (erasure_dev_seed23b_text_lever.json against erasure_dev_seed23b.json), it certified 4/6 against 5/6:
# heart's text round kept its retention (unseen-grid IRA 83.6 -> 93.2 %) but fell short on held-out UA (0.896),
# and striped (a style) stayed short with it. On the seed-29 build (erasure_dev_seed29_text_lever.json against
# erasure_dev_seed29_retain_forget.json, which the order above repeats row for row) it certified as many (5/6):
# checkered's rollback certified by it as by the weight, but heart's text round erased nothing (held-out UA
# 0.167) and, keeping retention, became the job's best round (unseen-grid UA 0.150 against 1.000).
# Weight decay of the LoRA factors (SpareConfig.weight_decay) is a default (0.5), not a lever. At 1 it made the
# seed-23 build's heart update 35 % smaller with a full erasure, and random changes of the smaller size cost no
# retention (retention_floor_dev_seed23_heart_decay{0,1}.json). The erasure's own same-kind loss stayed, though.
# In the loop on the two development builds (erasure_dev_seed{23,29}_decay{0,05,1}.json) 0.5 certified the most
# targets, 11 of 12 against 10 at 0 and at 1: the seed-23 build 6/6 (heart in round 3 at retain weight 4,
# unseen-grid IRA 93.6 %), the seed-29 build 5/6 with its lowest certified IRA up (96.5 % against 92.9 %) and
# lowest CRA down (94.6 % against 95.9 %). At 1 the seed-23 heart was certified in round 1 at unseen-grid IRA
# 85.9 % and striped fell short. The first testbed keeps every target at 0.5 (erasure_full_decay05.json).
# Raising the decay on a rollback (`decay`: weight_decay -> 1, before the retain weight) is in neither order. In the
# loop on the two development builds, on the four targets whose rounds roll back at the defaults
# (erasure_dev_seed{23,29}_decay_lever.json against erasure_dev_seed{23,29}_decay05_attack.json), the decay round
# lost as many of the verification grid's images as the round it replaced (seed-23 triangle's grid IRA 0.887 and
# heart's 0.804 in both; seed-29 heart's and dotted's held-out retention 0.667 and 0.897 in both), so every rollback
# took a round more: seed-23 heart, certified in round 3 at retain weight 4, ran out of rounds at weight 2 and failed.
# Alone on a default round of those targets (levers_dev_seed{23,29}_decay.json) it moved IRA / CRA by +0.6 / 0.0
# and +0.6 / -1.3 points on average, the doubled retain weight by +3.8 / 0.0 and +0.6 / -0.6.
# Projecting each step's forget gradient off the retain gradient where the two point apart (SpareConfig.
# conflict_projection, PCGrad) is a parameter, neither a default nor a lever. On a rebuilt seed-23 development
# model one round of heart over three training seeds read unseen-grid IRA 84.9 / 90.4 / 90.4 % of base against
# 79.5 / 93.2 / 87.7 % without it, UA 1.000 in all six (erasure_dev_seed23d_heart_round{,_conflict}_s{0,1,2}.json);
# at retain weight 32 both gave way on UA (0.750 / 0.650). In the loop on all six targets it certified 5/6 against
# 6/6 (striped's repulsion rounds broke same-kind retention, 0.884; erasure_dev_seed23d{,_conflict}.json).
_WIDER_POOL = {"cross_kv": "cross_attention", "cross_attention": "attention"}
_NARROWER_POOL = {wider: narrower for narrower, wider in _WIDER_POOL.items()}
ESD_LEVERS = ("steps",)


def lever_change(name: str, config: SpareConfig | EsdConfig) -> dict[str, Any]:
    """The config change of one lever (a name in SPARE_LEVERS, ESD_LEVERS or RETENTION_LEVERS), or {} when it
    cannot go further."""
    if name == "steps":
        return {"steps": min(config.steps * 2, 20000)} if config.steps < 20000 else {}
    if not isinstance(config, SpareConfig):
        return {}
    if name == "capacity":
        change: dict[str, Any] = {}
        if config.rank < 16:
            change["rank"] = min(config.rank * 2, 16)
        if config.top_k is None and config.max_modules < 256:
            change["max_modules"] = min(config.max_modules * 2, 256)
            change["saliency_fraction"] = min(0.99, max(config.saliency_fraction, 0.98))
        return change
    if name == "anchor":
        following = {"concept": "both", "both": "surrogate"}.get(config.forget_anchor)
        return {"forget_anchor": following} if following else {}
    if name == "repel":
        return {"forget_repel": config.forget_repel + 1.0} if config.forget_repel < 2.0 else {}
    if name == "placement":
        wider = _WIDER_POOL.get(config.saliency_pool)
        return {"saliency_pool": wider} if wider else {}
    if name == "narrow":
        narrower = _NARROWER_POOL.get(config.saliency_pool)
        return {"saliency_pool": narrower} if narrower else {}
    if name == "timesteps":
        if config.timesteps != "concept" or config.timestep_gamma >= 4:
            return {}
        return {"timestep_gamma": min(config.timestep_gamma + 1.0, 4.0),
                "timestep_uniform_mix": round(config.timestep_uniform_mix / 2, 4)}
    if name == "contexts":
        return {"samples_per_prompt": config.samples_per_prompt + 1} if config.samples_per_prompt < 4 else {}
    if name == "text":
        keep = config.deliver_pool == "trained" and config.saliency_pool != "cross_kv"
        return {"deliver_pool": "cross_kv"} if keep else {}
    if name == "project":
        following = {0.0: 0.99, 0.99: 0.999}.get(config.retain_projection)
        return {"retain_projection": following} if following else {}
    if name == "cross":
        following = {0.0: 0.25, 0.25: 0.5}.get(config.retain_on_forget)
        return {"retain_on_forget": following} if following is not None else {}
    if name == "neighbours":
        return {"retain_neighbours": 1} if config.retain_neighbours == 0 else {}
    if name == "decay":
        return {"weight_decay": 1.0} if config.weight_decay < 1.0 else {}
    if name == "retain":
        return {"w_retain": min(config.w_retain * 2, 100.0)} if config.w_retain < 100 else {}
    raise ValueError(f"unknown lever {name!r}")


def retain_more(config: SpareConfig | EsdConfig, set_aside: Collection[str] = ()) -> tuple[str, dict[str, Any]]:
    """The change that wins retention back after a round broke it, and its lever's name: the first lever of
    `RETENTION_LEVERS` that can still go further from `config`, skipping those in `set_aside` (an escalation
    that broke retention is not applied again to win it back). The retain weight, last, doubles again on every
    further rollback ({} once it cannot)."""
    for name in RETENTION_LEVERS:
        if name in set_aside:
            continue
        if change := lever_change(name, config):
            return name, change
    return "retain", {}
