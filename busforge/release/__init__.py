"""Releasing datasets: versioned, immutable pushes to the Hugging Face Hub."""
