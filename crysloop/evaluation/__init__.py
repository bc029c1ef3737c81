"""Generative-model evaluation: CDVAE/DiffCSP metrics (validity, coverage, property distributions, match rate),
uniqueness, novelty and S.U.N., fast enough for every campaign round."""

from crysloop.evaluation.report import EvaluationReport, evaluate
from crysloop.evaluation.writer import write_report

__all__ = ["EvaluationReport", "evaluate", "write_report"]
