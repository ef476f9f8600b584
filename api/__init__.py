"""HTTP routers (FastAPI): request/response models, auth dependencies, error mapping. No business logic."""
