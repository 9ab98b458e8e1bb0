"""Cron schedules that submit erasure batches; exactly one run per slot."""
