"""synthetic_au: a seeded, rendered AU dataset (see README.md)."""
