"""The end-to-end demo and its sample documents."""
