"""The SeedVR2 causal video VAE: exact to the official release, streamed in time, tiled in space."""

from .cost import estimate as estimate_vae_cost
from .layers import init_random_
from .loader import load_vae
from .model import VideoAutoencoder
from .tiling import VAETiling

__all__ = ["VAETiling", "VideoAutoencoder", "estimate_vae_cost", "init_random_", "load_vae"]
