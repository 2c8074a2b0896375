"""utils of bids-dl."""
