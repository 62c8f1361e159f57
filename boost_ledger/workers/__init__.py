"""Background workers: submitter, status poller and catalog sync. Any number of processes may
run them at once: every claim is a row lock taken with SKIP LOCKED inside a transaction."""
