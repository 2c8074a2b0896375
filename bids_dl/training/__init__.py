"""training of bids-dl."""
