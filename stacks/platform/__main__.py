"""Entry point when the Pulumi CLI runs this folder (the product uses it inline)."""

from stacks.platform.program import main

main()
