"""bids-dl: deep-learning brain extraction, lesion segmentation and contrast synthesis."""

__version__ = "0.1.0"
