"""synth of bids-dl."""
