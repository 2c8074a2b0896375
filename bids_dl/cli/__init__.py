"""cli of bids-dl."""
