"""Training the mask ControlNet and per-domain LoRA adapters (busforge train ...)."""
