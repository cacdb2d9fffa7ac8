"""The CLI side of the device flow. Needs only httpx and the CLI extras; never imports
server code, so ``pip install devicelink`` gives a CLI author the client alone."""
