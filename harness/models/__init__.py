"""Model architectures: the registry and the built-in factories (timm's layout: importing this registers them)."""

from harness.models import classification, segmentation  # noqa: F401  (each factory registers itself)
from harness.models.registry import RegisteredModel, create_model, get_model_info, list_models, register_model

__all__ = ["RegisteredModel", "create_model", "get_model_info", "list_models", "register_model"]
