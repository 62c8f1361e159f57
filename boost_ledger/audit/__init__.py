"""The auditor's tools: verify the whole ledger, replay an account, export, seal."""
