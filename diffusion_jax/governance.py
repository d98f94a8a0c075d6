"""Review routing for generated product media: which outputs a person must look at.

Generated images are never evidence of a real product. Before one is published, a
routing gate decides how it may be used, from flags that describe the asset:

* ``claims_real_sku``: it is shown as (or next to) a specific real product, so viewers
  will read it as that product's true appearance (labels, colours, materials, damage);
* ``contains_logo``: it shows a brand mark.

The base rule (the chapter's): if either flag is set the asset goes to
``"human_review"``; otherwise it may ship as ``"synthetic_labeled_preview"`` (published,
with a visible synthetic label and a provenance record). ::

    route(Asset("campaign_background", claims_real_sku=False, contains_logo=False))
    # 'synthetic_labeled_preview'

Extra rules are an explicit, separate option: :func:`route` takes ``extra_rules``,
callables ``rule(asset) -> decision or None``, and returns the *strictest* decision of the
base rule and every extra rule. So an extra rule can only make routing stricter, never
let through what the base rule holds back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

__all__ = ["PREVIEW", "REVIEW", "BLOCK", "DECISIONS", "Asset", "base_decision", "strictest", "route",
           "route_all", "chapter_assets"]

PREVIEW = "synthetic_labeled_preview"
REVIEW = "human_review"
BLOCK = "do_not_publish"
DECISIONS = (PREVIEW, REVIEW, BLOCK)  # from least to most strict
_STRICTNESS = {d: i for i, d in enumerate(DECISIONS)}


@dataclasses.dataclass(frozen=True)
class Asset:
    """One generated output and what it depicts. ``tags``: free-form extra facts (e.g.
    ``{"evidence"}``) that only extra rules look at; the base rule ignores them."""

    name: str
    claims_real_sku: bool
    contains_logo: bool
    tags: frozenset = frozenset()

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        for flag in ("claims_real_sku", "contains_logo"):
            value = getattr(self, flag)
            if not isinstance(value, bool):  # "False" or 0 must not pass as a flag silently
                raise ValueError(f"{flag} must be True or False, got {value!r} ({type(value).__name__})")
        if isinstance(self.tags, str) or not all(isinstance(t, str) for t in self.tags):
            raise ValueError(f"tags must be a collection of strings, got {self.tags!r}")
        object.__setattr__(self, "tags", frozenset(self.tags))

    @classmethod
    def from_dict(cls, d: dict) -> Asset:
        """From ``{"asset": name, "claims_real_sku": ..., "contains_logo": ..., "tags": [...]}``."""
        missing = [k for k in ("asset", "claims_real_sku", "contains_logo") if k not in d]
        if missing:
            raise ValueError(f"asset record {d!r} lacks {missing}")
        return cls(d["asset"], d["claims_real_sku"], d["contains_logo"], frozenset(d.get("tags", ())))


Rule = Callable[[Asset], "str | None"]


def base_decision(asset: Asset) -> str:
    """The chapter's rule: review if the asset claims a real SKU or shows a logo."""
    if not isinstance(asset, Asset):
        raise ValueError(f"asset must be a governance.Asset, got {type(asset).__name__}")
    return REVIEW if (asset.claims_real_sku or asset.contains_logo) else PREVIEW


def strictest(decisions: Iterable[str]) -> str:
    """The strictest of several decisions (``do_not_publish`` > ``human_review`` > preview)."""
    decisions = list(decisions)
    for d in decisions:
        if d not in _STRICTNESS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {d!r}")
    if not decisions:
        raise ValueError("decisions must not be empty")
    return max(decisions, key=_STRICTNESS.__getitem__)


def route(asset: Asset, extra_rules: Iterable[Rule] = ()) -> str:
    """The routing decision for one asset: the base rule, made stricter by any extra rule.

    Each extra rule returns a decision from :data:`DECISIONS` or ``None`` (no opinion).
    """
    decisions = [base_decision(asset)]
    for rule in extra_rules:
        d = rule(asset)
        if d is not None:
            decisions.append(d)
    return strictest(decisions)


def route_all(assets: Iterable[Asset | dict], extra_rules: Iterable[Rule] = ()) -> list[dict]:
    """``[{"asset": name, "decision": ...}, ...]`` for a batch (dicts go through
    :meth:`Asset.from_dict`), in input order."""
    extra_rules = list(extra_rules)
    out = []
    for a in assets:
        a = a if isinstance(a, Asset) else Asset.from_dict(a)
        out.append({"asset": a.name, "decision": route(a, extra_rules)})
    return out


def chapter_assets() -> list[Asset]:
    """The chapter's three example outputs."""
    return [
        Asset("campaign_background", claims_real_sku=False, contains_logo=False),
        Asset("product_detail_view", claims_real_sku=True, contains_logo=False),
        Asset("package_damage_evidence", claims_real_sku=True, contains_logo=True),
    ]
