"""Registry: registered models, versions, aliases and the model format."""
