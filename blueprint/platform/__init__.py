"""The AI platform layer: its config, the offline preview and the Pulumi deploy."""
