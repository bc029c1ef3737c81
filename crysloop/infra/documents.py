"""mongoengine documents of the results database: campaigns, candidates and what was computed on them."""

from __future__ import annotations

from datetime import UTC, datetime

import mongoengine as me


def utcnow() -> datetime:
    return datetime.now(UTC)


class Campaign(me.Document):
    """A named generation campaign with its validated configuration."""

    name = me.StringField(required=True, unique=True)
    config = me.DictField()
    status = me.StringField(default="created", choices=("created", "running", "completed", "failed", "stopped"))
    description = me.StringField(default="")
    created_at = me.DateTimeField(default=utcnow)
    updated_at = me.DateTimeField(default=utcnow)

    meta = {"collection": "campaigns", "indexes": ["status"]}


class Round(me.Document):
    """One generate -> screen -> label -> fine-tune cycle of a campaign, with its statistics."""

    campaign = me.StringField(required=True)
    index = me.IntField(required=True, min_value=0)
    status = me.StringField(default="running", choices=("running", "completed", "failed"))
    stages_done = me.ListField(me.StringField())
    stats = me.DictField()
    started_at = me.DateTimeField(default=utcnow)
    finished_at = me.DateTimeField()

    meta = {
        "collection": "rounds",
        "indexes": [{"fields": ["campaign", "index"], "unique": True}],
        "ordering": ["campaign", "index"],
    }


class ModelCheckpoint(me.Document):
    """A saved model: where its weights are, what it was trained on and how well it did."""

    name = me.StringField(required=True, unique=True)
    kind = me.StringField(required=True)  # composition_lm, diffcsp, cdvae, ...
    path = me.StringField(required=True)
    sha256 = me.StringField()
    campaign = me.StringField()
    round = me.IntField()
    parent = me.StringField()  # the checkpoint it was fine-tuned from
    config = me.DictField()
    conditions = me.ListField(me.StringField())
    metrics = me.DictField()
    created_at = me.DateTimeField(default=utcnow)

    meta = {"collection": "checkpoints", "indexes": ["kind", "campaign"]}


class OxidationState(me.EmbeddedDocument):
    """One (element, oxidation state, count) tuple of a valence assignment."""

    element = me.StringField(required=True)
    oxidation_state = me.IntField(required=True)
    count = me.FloatField(required=True)


class GeneratedComposition(me.Document):
    """A composition emitted by the Stage I language model, with its valence assignment and conditions."""

    formula = me.StringField(required=True)  # reduced formula
    composition = me.DictField()  # element -> count
    oxidation_states = me.EmbeddedDocumentListField(OxidationState)
    ionic = me.BooleanField(default=True)
    conditions = me.DictField()
    checkpoint = me.StringField()
    campaign = me.StringField()
    round = me.IntField()
    created_at = me.DateTimeField(default=utcnow)

    meta = {"collection": "compositions", "indexes": ["campaign", "formula"]}


class Candidate(me.Document):
    """A crystal structure, generated or ingested, identified by its canonical structure hash."""

    structure_hash = me.StringField(required=True, unique=True)
    structure = me.DictField(required=True)  # pymatgen Structure.as_dict()
    formula = me.StringField(required=True)  # reduced formula
    composition = me.DictField()  # element -> amount in the cell
    elements = me.ListField(me.StringField())
    chemsys = me.StringField(required=True)  # "Ga-N", elements sorted
    nsites = me.IntField()
    oxidation_states = me.EmbeddedDocumentListField(OxidationState)
    source = me.StringField(default="generated", choices=("generated", "dataset", "user"))
    dataset = me.StringField()
    material_id = me.StringField()
    origin = me.DictField()  # model, checkpoint and conditions that produced it
    campaign = me.StringField()
    round = me.IntField()
    properties = me.DictField()  # dataset properties, e.g. formation_energy_per_atom
    created_at = me.DateTimeField(default=utcnow)

    meta = {
        "collection": "candidates",
        "indexes": ["campaign", "formula", "chemsys", "elements", "source", ("campaign", "round"), "dataset"],
    }


class RoundSample(me.Document):
    """One crystal a campaign round's generator sampled, linked to its candidate (``None`` when it was invalid).

    The explicit (campaign, round) -> candidate link: a candidate first stored by an earlier round or campaign
    still belongs to every round that sampled it, and round statistics run over all samples, invalid and
    duplicate ones included.
    """

    campaign = me.StringField(required=True)
    round = me.IntField(required=True)
    index = me.IntField(required=True)  # position in the round's sampling order
    valid = me.BooleanField(required=True)
    structure_hash = me.StringField()
    candidate = me.ReferenceField(Candidate)
    structure = me.DictField()  # as sampled

    meta = {
        "collection": "round_samples",
        "indexes": [{"fields": ["campaign", "round", "index"], "unique": True}, "candidate"],
        "ordering": ["campaign", "round", "index"],
    }


class ScreeningResult(me.Document):
    """MLIP relaxation, energy above hull and phonon stability of one candidate under one potential."""

    candidate = me.ReferenceField(Candidate, required=True, reverse_delete_rule=me.CASCADE)
    mlip = me.StringField(required=True)
    campaign = me.StringField()
    formula = me.StringField()
    chemsys = me.StringField()
    status = me.StringField(default="ok", choices=("ok", "unconverged", "failed"))
    error = me.StringField()
    converged = me.BooleanField()
    steps = me.IntField()
    energy_per_atom = me.FloatField()
    relaxed_structure = me.DictField()
    formation_energy_per_atom = me.FloatField()
    e_above_hull = me.FloatField()
    hull_source = me.StringField()  # mp-table | mp-api | mlip: where the hull's reference energies came from
    hull_compounds = me.IntField()  # known compounds in the chemical system and its sub-systems
    hull_covered = me.BooleanField()  # False: elements only, so the stability is unknown
    stable = me.BooleanField()  # None when unknown (uncovered system, unconverged or failed relaxation)
    phonon_stable = me.BooleanField()
    min_frequency_thz = me.FloatField()
    wall_time_s = me.FloatField()
    created_at = me.DateTimeField(default=utcnow)

    meta = {
        "collection": "screening",
        "indexes": [
            {"fields": ["candidate", "mlip"], "unique": True},
            "campaign",
            "formula",
            "chemsys",
            "e_above_hull",
            "phonon_stable",
            "stable",
        ],
    }


class HullReference(me.Document):
    """Reference entries of one chemical system relaxed with one potential, cached for hull construction."""

    mlip = me.StringField(required=True)
    chemsys = me.StringField(required=True)
    entries = me.ListField(me.DictField())  # pymatgen ComputedEntry.as_dict()
    created_at = me.DateTimeField(default=utcnow)

    meta = {"collection": "hull_references", "indexes": [{"fields": ["mlip", "chemsys"], "unique": True}]}


DFT_TRANSITIONS: dict[str, set[str]] = {
    "pending": {"running"},
    "running": {"completed", "failed"},
    "failed": {"pending"},
    "completed": set(),
}


class DFTAttempt(me.EmbeddedDocument):
    """One VASP run of a DFT job: where it ran, how it ended, what custodian corrected."""

    index = me.IntField(required=True)
    run_dir = me.StringField()
    host = me.StringField()  # where the process that owns the attempt runs
    pid = me.IntField()
    pid_started = me.IntField()  # that process's start time (clock ticks after boot), so a reused pid is not it
    started_at = me.DateTimeField(default=utcnow)
    finished_at = me.DateTimeField()
    state = me.StringField(default="running", choices=("running", "completed", "failed"))
    error = me.StringField()
    corrections = me.ListField(me.DictField())
    restarted_from = me.StringField()
    structure = me.DictField()  # the structure this attempt started from
    incar_overrides = me.DictField()  # INCAR changes carried over from earlier attempts' corrections


class DFTJob(me.Document):
    """A VASP relaxation of one candidate, moved through pending -> running -> completed | failed."""

    candidate = me.ReferenceField(Candidate, required=True, reverse_delete_rule=me.CASCADE)
    campaign = me.StringField()
    formula = me.StringField()
    preset = me.StringField(required=True)
    state = me.StringField(default="pending", choices=tuple(DFT_TRANSITIONS))
    attempts = me.EmbeddedDocumentListField(DFTAttempt)
    errors = me.ListField(me.StringField())
    converged = me.BooleanField()
    ionic_steps = me.IntField()
    final_energy = me.FloatField()
    final_energy_per_atom = me.FloatField()
    final_structure = me.DictField()
    initial_energy_per_atom = me.FloatField()  # MLIP energy of the input structure
    energy_diff_per_atom = me.FloatField()  # |E_DFT - E_initial| per atom
    created_at = me.DateTimeField(default=utcnow)
    updated_at = me.DateTimeField(default=utcnow)

    meta = {
        "collection": "dft_jobs",
        "indexes": [{"fields": ["candidate", "preset"], "unique": True}, "campaign", "state", "formula"],
    }

    def transition(self, new_state: str, error: str | None = None) -> None:
        """Move to ``new_state`` if the state machine allows it; errors are appended, never replaced."""
        if new_state not in DFT_TRANSITIONS[self.state]:
            raise ValueError(f"DFT job {self.pk}: illegal transition {self.state} -> {new_state}")
        self.state = new_state
        if error:
            self.errors.append(error)
        self.updated_at = utcnow()


class KappaResult(me.Document):
    """Lattice thermal conductivity of one candidate from phono3py with one force calculator."""

    candidate = me.ReferenceField(Candidate, required=True, reverse_delete_rule=me.CASCADE)
    campaign = me.StringField()
    formula = me.StringField()
    calculator = me.StringField(required=True)  # mlip name or "vasp"
    method = me.StringField(default="RTA", choices=("RTA", "LBTE"))
    temperatures = me.ListField(me.FloatField())
    kappa = me.ListField(me.ListField(me.FloatField()))  # per temperature, Voigt xx yy zz yz xz xy, W/m/K
    kappa_average = me.ListField(me.FloatField())  # per temperature, trace / 3
    mesh = me.ListField(me.IntField())
    fc3_supercell = me.ListField(me.ListField(me.IntField()))
    fc2_supercell = me.ListField(me.ListField(me.IntField()))
    min_frequency_thz = me.FloatField()  # lowest phonon frequency on the mesh; clearly negative = unstable
    status = me.StringField(default="ok", choices=("ok", "failed", "skipped"))
    error = me.StringField()
    wall_time_s = me.FloatField()
    created_at = me.DateTimeField(default=utcnow)

    meta = {
        "collection": "kappa",
        "indexes": [{"fields": ["candidate", "calculator", "method"], "unique": True}, "campaign", "formula"],
    }


class VdwRecord(me.Document):
    """One relaxation of a van der Waals dataset build: an elemental reference, a monolayer or a bilayer."""

    build = me.StringField(
        required=True
    )  # potential and settings of the build, see crysloop.vdw.config.BuildConfig.key
    kind = me.StringField(required=True, choices=("reference", "monolayer", "bilayer"))
    name = me.StringField(required=True)  # element, monolayer name or stacking key
    formula = me.StringField()
    status = me.StringField(default="ok", choices=("ok", "failed"))
    error = me.StringField()
    converged = me.BooleanField()
    steps = me.IntField()
    energy = me.FloatField()  # eV, whole cell
    structure = me.DictField()  # relaxed, pymatgen Structure.as_dict()
    extra = me.DictField()  # e.g. energies of the isolated layers of a bilayer
    stacking = me.DictField()
    wall_time_s = me.FloatField()
    created_at = me.DateTimeField(default=utcnow)

    meta = {"collection": "vdw_records", "indexes": [{"fields": ["build", "kind", "name"], "unique": True}]}


ALL_DOCUMENTS = (
    Campaign,
    Round,
    ModelCheckpoint,
    GeneratedComposition,
    Candidate,
    RoundSample,
    ScreeningResult,
    HullReference,
    DFTJob,
    KappaResult,
    VdwRecord,
)
