"""pix2pix: paired image-to-image translation with conditional GANs (pix2pix and pix2pixHD)."""

__version__ = "0.1.0"
