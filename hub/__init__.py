"""Audience Hub: pull contacts and activity into a local store, segment them, push tags back."""

__version__ = "0.1.0"
