"""The `pix2pix` command line."""
