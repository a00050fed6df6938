"""abplatform: experimentation and A/B testing for model serving on fal."""

__version__ = "0.1.0"
