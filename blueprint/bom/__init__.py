"""The bill of materials: lock file, offline bundle, site mirror, SBOM and licence compliance."""
