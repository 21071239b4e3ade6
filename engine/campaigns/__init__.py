"""Campaigns: a tenant's template sent to a recipient list, expanded into messages.

``recipients`` checks uploaded rows (pure); ``service.Campaigns`` is the one
service behind the API and the CLI (create, recipients, start, pause, resume,
cancel, progress); ``expansion.Expansion`` renders a running campaign's
pending rows and accepts them through the acceptor, in batches a crash can
neither lose nor double.
"""

from engine.campaigns.service import (
    CampaignProgress,
    Campaigns,
    CampaignSpec,
    RecipientReport,
)

__all__ = ["CampaignProgress", "CampaignSpec", "Campaigns", "RecipientReport"]
