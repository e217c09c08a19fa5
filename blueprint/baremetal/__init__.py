"""Bare-metal rollout: BMCs over Redfish, hardware discovery, network boot, provisioning."""
