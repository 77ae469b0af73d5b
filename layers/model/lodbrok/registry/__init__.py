"""The model registry: versioned bundles in S3, signed approvals, and each version's lineage."""
