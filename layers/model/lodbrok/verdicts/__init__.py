"""Verdicts, the right labels users send: their one definition, attestation, the archive and the memory."""
