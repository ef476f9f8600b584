"""Signer confirmation: approval devices, WebAuthn, and the Signature Activation Data."""
