"""interfaces of bids-dl."""
