"""The review-routing gate: the chapter's three decisions, plus invariants of the rule."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from diffusion_jax import governance as G


def test_chapter_decisions():
    # the chapter's stated outputs for its three assets
    assert G.route_all(G.chapter_assets()) == [
        {"asset": "campaign_background", "decision": "synthetic_labeled_preview"},
        {"asset": "product_detail_view", "decision": "human_review"},
        {"asset": "package_damage_evidence", "decision": "human_review"},
    ]


def test_dict_input_matches_dataclass_input():
    dicts = [{"asset": a.name, "claims_real_sku": a.claims_real_sku, "contains_logo": a.contains_logo}
             for a in G.chapter_assets()]
    assert G.route_all(dicts) == G.route_all(G.chapter_assets())


@pytest.mark.parametrize("sku,logo", list(itertools.product([False, True], repeat=2)))
def test_preview_only_when_no_flag_is_set(sku, logo):
    decision = G.route(G.Asset("a", sku, logo))
    assert decision == ("human_review" if (sku or logo) else "synthetic_labeled_preview")


def test_setting_a_flag_never_relaxes_the_decision():
    order = {d: i for i, d in enumerate(G.DECISIONS)}
    for sku, logo in itertools.product([False, True], repeat=2):
        before = order[G.route(G.Asset("a", sku, logo))]
        assert order[G.route(G.Asset("a", True, logo))] >= before
        assert order[G.route(G.Asset("a", sku, True))] >= before


def test_extra_rules_only_make_routing_stricter():
    relax = lambda a: "synthetic_labeled_preview"
    block = lambda a: "do_not_publish" if "evidence" in a.tags else None
    for asset in G.chapter_assets():
        assert G.route(asset, [relax]) == G.route(asset)
        assert G.route(asset, [block]) == G.route(asset)  # no tags: no opinion
    evidence = G.Asset("claim_photo", True, False, tags={"evidence"})
    assert G.route(evidence, [block]) == "do_not_publish"
    assert G.route(G.Asset("bg", False, False, tags={"evidence"}), [relax, block]) == "do_not_publish"
    with pytest.raises(ValueError, match="decision must be one of"):
        G.route(evidence, [lambda a: "ship_it"])


def test_flags_must_be_real_booleans():
    with pytest.raises(ValueError, match="claims_real_sku must be True or False"):
        G.Asset("a", "False", False)
    with pytest.raises(ValueError, match="contains_logo must be True or False"):
        G.Asset("a", False, 1)
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        G.Asset("", False, False)
    with pytest.raises(ValueError, match="lacks"):
        G.Asset.from_dict({"asset": "a", "claims_real_sku": True})
    with pytest.raises(ValueError, match="tags must be"):
        G.Asset("a", False, False, tags="evidence")
    with pytest.raises(ValueError, match="governance.Asset"):
        G.route({"asset": "a"})


def test_assets_are_frozen_and_hashable():
    a = G.Asset("a", False, False, tags=["x"])
    assert a.tags == frozenset({"x"}) and hash(a) == hash(G.Asset("a", False, False, tags={"x"}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.contains_logo = True
