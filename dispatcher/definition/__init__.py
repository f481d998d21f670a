"""What a campaign is: its file, its templates and its send time."""
