"""The Kubernetes layer's controller side: topology, config rendering, tokens, day-2 verbs."""
