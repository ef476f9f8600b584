"""Services: the business operations the CLI and the API both call. They never commit."""
