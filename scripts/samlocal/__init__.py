"""`make sam-local` and tests/samlocal: the built predict function in Lambda-like containers through `sam local`."""
