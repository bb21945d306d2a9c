"""The data path: pipelines, transforms, the in-memory cache, records, folds."""
