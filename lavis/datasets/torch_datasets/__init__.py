"""torch Datasets that the builders return (one item per sample, a ``collater`` per dataset)."""
