"""The AI platform stack: one per site, components as ComponentResources."""
