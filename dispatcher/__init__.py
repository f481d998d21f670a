"""Campaign dispatcher: a shop's newsletter by email and promotions by SMS.

campaign file -> Campaign + Delivery rows (database) -> delivery ids (Dramatiq) ->
worker: consent check at send time -> render -> transport -> record.
"""

# Errors
from dispatcher.errors import (
    CampaignError,
    ConfigurationError,
    DeliveryError,
    DispatcherError,
    InputError,
    NotFoundError,
    PermanentDeliveryError,
    TokenError,
    TransientDeliveryError,
)

# Settings
from dispatcher.settings import Settings, get_settings, load_settings

# Data
from dispatcher.store.models import Campaign, Channel, Delivery, DeliveryStatus, Member

__version__ = "0.1.0"

__all__ = [
    "Campaign",
    "CampaignError",
    "Channel",
    "ConfigurationError",
    "Delivery",
    "DeliveryError",
    "DeliveryStatus",
    "DispatcherError",
    "InputError",
    "Member",
    "NotFoundError",
    "PermanentDeliveryError",
    "Settings",
    "TokenError",
    "TransientDeliveryError",
    "get_settings",
    "load_settings",
]
