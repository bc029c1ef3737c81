"""Campaign bookkeeping in the results database: campaigns, rounds and their finished stages, model checkpoints."""

from __future__ import annotations

from collections.abc import Callable

from pymatgen.core import Structure

from crysloop.errors import InputError
from crysloop.infra.documents import Campaign, Candidate, Round, RoundSample, ScreeningResult, utcnow


def open_campaign(config: dict, resume: bool = False, normalise: Callable[[dict], dict] | None = None) -> Campaign:
    """Create the campaign, or return the stored one when ``config`` is the same (or ``resume`` is asked).

    ``normalise`` brings a stored configuration to the current form first (fields moved since it was stored).
    """
    campaign = Campaign.objects(name=config["name"]).first()
    if campaign is None:
        if resume:
            raise InputError(f"no campaign named {config['name']!r} to resume (see `crysloop campaign list`)")
        campaign = Campaign(name=config["name"], config=config, description=config.get("description", ""))
        campaign.save()
        return campaign
    if not resume and (normalise or dict)(campaign.config) != config:
        raise InputError(
            f"campaign {config['name']!r} exists with a different configuration: "
            f"`crysloop campaign resume {config['name']}` continues it, or choose a new name"
        )
    return campaign


def all_campaigns() -> list[Campaign]:
    """Every campaign, oldest first."""
    return list(Campaign.objects.order_by("created_at"))


def candidate_count(campaign: str) -> int:
    """How many candidates a campaign stored first."""
    return Candidate.objects(campaign=campaign).count()


def get_campaign(name: str) -> Campaign:
    campaign = Campaign.objects(name=name).first()
    if campaign is None:
        raise InputError(f"no campaign named {name!r} (see `crysloop campaign list`)")
    return campaign


def set_status(campaign: Campaign, status: str) -> None:
    Campaign.objects(id=campaign.id).update(set__status=status, set__updated_at=utcnow())
    campaign.reload()


def open_round(campaign: str, index: int) -> Round:
    """The round document, created on first use (the unique index makes a concurrent create fail, not duplicate)."""
    round_ = Round.objects(campaign=campaign, index=index).first()
    if round_ is None:
        round_ = Round(campaign=campaign, index=index)
        round_.save()
    return round_


def plain(value):
    """numpy scalars and containers of them as plain Python values, which BSON can store."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value.item() if hasattr(value, "item") and not isinstance(value, (str, bytes)) else value


def mark_stage(round_: Round, stage: str, **stats) -> None:
    """Record a finished stage (and its statistics) so a resumed campaign skips it."""
    updates = {f"set__stats__{k}": plain(v) for k, v in stats.items()}
    Round.objects(id=round_.id).update(add_to_set__stages_done=stage, **updates)
    round_.reload()


def finish_round(round_: Round, status: str = "completed") -> None:
    Round.objects(id=round_.id).update(set__status=status, set__finished_at=utcnow())
    round_.reload()


def rounds(campaign: str) -> list[Round]:
    return list(Round.objects(campaign=campaign).order_by("index"))


def _samples(campaign: str, index: int) -> list[RoundSample]:
    return list(RoundSample.objects(campaign=campaign, round=index).order_by("index").no_dereference())


def round_candidates(campaign: str, index: int) -> list[Candidate]:
    """The distinct candidates a round sampled (first stored there or earlier), in sampling order.

    Rounds stored before samples were linked fall back to the candidates first stored by the round.
    """
    samples = _samples(campaign, index)
    if not samples:
        return list(Candidate.objects(campaign=campaign, round=index))
    ids = list(dict.fromkeys(s.candidate.id for s in samples if s.candidate is not None))
    by_id = {c.id: c for c in Candidate.objects(id__in=ids)}
    return [by_id[i] for i in ids if i in by_id]


def first_stored_by(campaign: str, index: int) -> int:
    """How many candidates this round stored first (the others were known from earlier rounds or campaigns)."""
    return Candidate.objects(campaign=campaign, round=index).count()


def campaign_candidate_ids(campaign: str) -> list:
    """Ids of the candidates a campaign stored or any of its rounds sampled."""
    linked = RoundSample._get_collection().distinct("candidate", {"campaign": campaign, "candidate": {"$ne": None}})
    return sorted(set(linked) | set(Candidate.objects(campaign=campaign).scalar("id")))


def _screening_of(candidates: list[Candidate], mlip: str) -> dict:
    return {
        r.candidate.id: r
        for r in ScreeningResult.objects(candidate__in=[c.id for c in candidates], mlip=mlip).no_dereference()
    }


def round_screening(campaign: str, index: int, mlip: str) -> list[tuple[Candidate, ScreeningResult | None]]:
    """Each candidate of the round with its screening result under ``mlip`` (None when not screened)."""
    candidates = round_candidates(campaign, index)
    results = _screening_of(candidates, mlip)
    return [(c, results.get(c.id)) for c in candidates]


def round_samples(campaign: str, index: int, mlip: str) -> list[tuple[Structure, ScreeningResult | None]]:
    """Every crystal the round's generator sampled (invalid and repeated ones too) with its candidate's screening.

    Round statistics run over this list; rounds stored before samples were linked use their candidates.
    """
    samples = _samples(campaign, index)
    if not samples:
        return [(Structure.from_dict(c.structure), r) for c, r in round_screening(campaign, index, mlip)]
    candidates = list(Candidate.objects(id__in=list({s.candidate.id for s in samples if s.candidate is not None})))
    results = _screening_of(candidates, mlip)
    return [
        (Structure.from_dict(s.structure), results.get(s.candidate.id) if s.candidate is not None else None)
        for s in samples
    ]


def relaxed_or_generated(candidate: Candidate, result: ScreeningResult | None) -> Structure:
    if result is not None and result.relaxed_structure:
        return Structure.from_dict(result.relaxed_structure)
    return Structure.from_dict(candidate.structure)
