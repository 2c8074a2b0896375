"""workflows of bids-dl."""
