"""Variants of an export: the registry, and the built-in ones (importing this registers them)."""

from harness.variants import builtin  # noqa: F401  (each built-in variant registers itself)
from harness.variants.registry import (Variant, VariantJob, VariantModel, get_variant, list_variants, register_variant,
                                       variant_of)

__all__ = ["Variant", "VariantJob", "VariantModel", "get_variant", "list_variants", "register_variant", "variant_of"]
