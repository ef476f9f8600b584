"""The reference approval-device client (``kyso-device``): what the phone app does, for
integrators, the demo and the tests. Its key lives in a 0600 state file instead of secure hardware.
"""
