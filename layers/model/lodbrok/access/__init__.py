"""Who calls: a client's role, by the API key id API Gateway reports, and the operators' key management."""
