"""Plumbing shared by Echo's services: settings, the gRPC server skeleton, audio helpers, models."""
