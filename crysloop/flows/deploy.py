"""Deployments: a campaign on a cron schedule, served by a long-lived process or run by a work pool's workers."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from crysloop.campaign.config import CampaignConfig
from crysloop.flows.campaign import campaign_flow

ENTRYPOINT = "crysloop/flows/campaign.py:campaign_flow"


def _parameters(config: CampaignConfig) -> dict:
    # scheduled runs continue the campaign: finished rounds are skipped, a killed run is picked up
    return {"config": config.model_dump(mode="json"), "resume": False}


def campaign_deployment(config: CampaignConfig, cron: str):
    """A RunnerDeployment for ``prefect.serve``: this process runs each scheduled campaign run."""
    return campaign_flow.to_deployment(
        name=config.name,
        cron=cron,
        parameters=_parameters(config),
        tags=["crysloop", f"campaign:{config.name}"],
        description=config.description or f"crysloop campaign {config.name}",
    )


def register_for_work_pool(config: CampaignConfig, cron: str, work_pool: str) -> UUID:
    """Register the deployment from the installed source for ``work_pool`` (process workers pick it up)."""
    source = Path(__file__).resolve().parents[2]
    deployable = campaign_flow.from_source(source=str(source), entrypoint=ENTRYPOINT)
    return deployable.deploy(
        name=config.name,
        work_pool_name=work_pool,
        cron=cron,
        parameters=_parameters(config),
        tags=["crysloop", f"campaign:{config.name}"],
        build=False,
        push=False,
    )
