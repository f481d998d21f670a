"""From a campaign to queued work: the broker, and expansion into delivery rows and jobs."""
