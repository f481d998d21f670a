"""A delivery's life: claims, records, campaign states, leases, pacing and error storms."""
