"""The conformance suite: the same trials for every registered connector (see :mod:`hub.conformance`)."""
