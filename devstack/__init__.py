"""The local stack behind `make local`: template-driven AWS emulation, API gateway and queue poller."""
