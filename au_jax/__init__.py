"""au_jax: facial Action Unit detection in JAX/Flax (linen)."""

__version__ = '0.1.0'
