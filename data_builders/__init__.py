"""TFDS builders, one sub-package per dataset (`tfds new` layout)."""
