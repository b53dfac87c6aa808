"""The push engine: segment memberships become tags in the destinations, diff-only and safely.

- :mod:`hub.push.plan` computes what a destination should hold (memberships, minus held-out members, minus
  people without the consent the destination requires), diffs it against the push ledger (what the destination
  acknowledged last time) and applies the guards. The plan is the same for ``--dry-run`` and a real push.
- :mod:`hub.push.ledger` reads and writes the ledger: per (destination, person, tag) its state, remote id,
  attempts and backoff.
- :mod:`hub.push.run` executes a plan through the destination's :class:`~hub.contracts.Sink`, records every
  per-record outcome, and reconciles the ledger with the remote tags (first push, lost database, drift).
- :mod:`hub.push.webhooks` sends segment entry and exit events to outgoing webhooks, signed and retried.

Ownership: the hub only ever removes tags it added itself, recorded in the ledger and namespaced by the
destination's ``tag_prefix``. Tags set by people or other tools are never touched.
"""
