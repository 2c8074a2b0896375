"""models of bids-dl."""
