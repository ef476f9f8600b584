"""A small typed client for integrators: OAuth2 tokens, the CSC API, and pyHanko's CSCSigner."""

from kyso_client.client import CscAuthorization, KysoClient, KysoError
from kyso_client.pyhanko_csc import KysoAuthorizationManager, csc_signer

__all__ = ["CscAuthorization", "KysoAuthorizationManager", "KysoClient", "KysoError", "csc_signer"]
