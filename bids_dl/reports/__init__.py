"""reports of bids-dl."""
