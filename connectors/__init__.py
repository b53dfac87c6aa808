"""Connectors shipped with Audience Hub, one package per source or destination (see ``hub.registry``)."""
