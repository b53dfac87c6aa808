"""Tests of the Mailchimp connector: mapping, paging, client, sync, sink, emulator and the spec contract."""
