"""Pulumi programs of the product (the cluster layer)."""
