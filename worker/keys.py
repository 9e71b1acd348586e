"""Every Redis key invoicer uses, named in one place.

All keys live under one configurable prefix (default `invoicer:`), so one
Redis can serve several installations and `redis-cli --scan --pattern
'invoicer:*'` shows exactly what is ours. arq's own per-job keys
(`arq:job:<id>`, `arq:in-progress:<id>`, `arq:retry:<id>`, `arq:result:<id>`)
keep arq's fixed prefixes; our job ids start with the prefix so they can be
told apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobs.models import Provider

# arq's own keys (`arq.constants`; spelled here so that enqueueing never
# imports arq, and checked against arq's by the tests).
ARQ_JOB = "arq:job:"
ARQ_IN_PROGRESS = "arq:in-progress:"
ARQ_RETRY = "arq:retry:"
ARQ_RESULT = "arq:result:"
ARQ_ABORT = "arq:abort"
"""Sorted set of job ids asked to abort (arq's `abort_jobs_ss`)."""


def account_name(provider: Provider, account: str) -> str:
    """`maast`, or `maast@acct` for a non-default account: how logs name an account."""
    return provider.value if account == "default" else f"{provider.value}@{account}"


def invoice_key(provider: Provider, account: str, number: str) -> str:
    """`maast:INV-1`, or `maast@acct:INV-1` for a non-default account.

    The one name an invoice goes by in logs, the ledger, dead letters, the
    dashboard and arq job ids (`InvoiceKey` reads it back).
    """
    return f"{account_name(provider, account)}:{number}"


@dataclass(frozen=True)
class InvoiceKey:
    """An invoice key as its parts; `str()` gives the key (`invoice_key`)."""

    provider: Provider
    account: str
    number: str

    @classmethod
    def parse(cls, text: str) -> InvoiceKey:
        """The parts of `maast:INV-1` or `maast@acct:INV-1`.

        Raises:
            ValueError: `text` is not an invoice key (no number, unknown provider).
        """
        who, colon, number = text.rpartition(":")  # numbers never hold a colon
        provider, at, account = who.partition("@")
        if not colon or not number or (at and not account):
            raise ValueError(f"not an invoice key: {text!r}")
        return cls(Provider(provider), account or "default", number)

    def __str__(self) -> str:
        return invoice_key(self.provider, self.account, self.number)


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix."""

    prefix: str = "invoicer:"

    def queue(self, provider: Provider) -> str:
        """arq queue (sorted set of job ids) for one provider."""
        return f"{self.prefix}queue:{provider.value}"

    def job_id(self, invoice_key: str, generation: int) -> str:
        """arq job id: one per invoice and requeue generation."""
        return f"{self.prefix}{invoice_key}#{generation}"

    def ledger(self, invoice_key: str) -> str:
        """Hash: the invoice's state, fingerprint, payload, receipt, errors, attempts."""
        return f"{self.prefix}ledger:{invoice_key}"

    def history(self, invoice_key: str) -> str:
        """List: the invoice's attempt history (capped), newest last."""
        return f"{self.prefix}history:{invoice_key}"

    def leases(self) -> str:
        """Sorted set: invoice keys held by a worker, scored by lease expiry (ms)."""
        return f"{self.prefix}leases"

    def batch(self, batch_id: str) -> str:
        """Hash: a batch's name, provider, creation time and per-state counters."""
        return f"{self.prefix}batch:{batch_id}"

    def batch_members(self, batch_id: str) -> str:
        """Sorted set: the invoice keys of a batch, scored by enqueue order."""
        return f"{self.prefix}batch:{batch_id}:members"

    def batch_sequence(self, batch_id: str) -> str:
        """Counter: the enqueue order of a batch's members (their score)."""
        return f"{self.prefix}batch:{batch_id}:seq"

    def batches(self) -> str:
        """Sorted set: batch ids scored by creation time (ms)."""
        return f"{self.prefix}batches"

    def totals(self) -> str:
        """Hash: per-state counters over every invoice, for the dashboard."""
        return f"{self.prefix}totals"

    def account_totals(self, who: str) -> str:
        """Hash: per-state counters of one provider account's invoices.

        `who` is `account_name(provider, account)`: `maast`, `maast@eu`.
        """
        return f"{self.prefix}totals:{who}"

    def dead_letters(self) -> str:
        """Sorted set: dead-lettered invoice keys scored by time (ms)."""
        return f"{self.prefix}dlq"

    def dead_letter(self, invoice_key: str) -> str:
        """Hash: one dead-letter entry."""
        return f"{self.prefix}dlq:{invoice_key}"

    def dead_letter_reasons(self) -> str:
        """Hash: reason -> how many dead letters have it (maintained with the index)."""
        return f"{self.prefix}dlq-reasons"

    def dead_letters_by_reason(self, reason: str) -> str:
        """Sorted set: the dead-lettered invoice keys of one reason, scored by time (ms)."""
        return f"{self.prefix}dlq-reason:{reason}"

    def dead_letters_of_batch(self, batch_id: str) -> str:
        """Sorted set: the dead-lettered invoice keys of one batch, scored by time (ms)."""
        return f"{self.prefix}dlq-batch:{batch_id}"

    def duplicates(self) -> str:
        """Sorted set: the operator list, invoice keys with a duplicate at the provider
        that could not be voided (sent or paid), scored by when it was found (ms)."""
        return f"{self.prefix}duplicates"

    def duplicate(self, invoice_key: str) -> str:
        """Hash: one operator-list entry (number, provider, keeper id, the other
        copies with their status, why, when)."""
        return f"{self.prefix}duplicate:{invoice_key}"

    def dead_letter_reasons_of_batch(self, batch_id: str) -> str:
        """Hash: reason -> how many of one batch's dead letters have it."""
        return f"{self.prefix}dlq-batch-reasons:{batch_id}"

    def dead_letters_of_batch_reason(self, batch_id: str, reason: str) -> str:
        """Sorted set: one batch's dead-lettered invoice keys with one reason, by time (ms)."""
        return f"{self.prefix}dlq-batch-reason:{batch_id}:{reason}"

    def dead_letters_of_provider(self, provider: Provider) -> str:
        """Sorted set: the dead-lettered invoice keys of one provider, scored by time (ms)."""
        return f"{self.prefix}dlq-provider:{provider.value}"

    def dead_letters_of_provider_reason(self, provider: Provider, reason: str) -> str:
        """Sorted set: one provider's dead-lettered invoice keys with one reason, by time (ms)."""
        return f"{self.prefix}dlq-provider-reason:{provider.value}:{reason}"

    def rate(self, provider: Provider, account: str) -> str:
        """Sorted set: request grant times of the last window (shared limiter)."""
        return f"{self.prefix}rate:{provider.value}:{account}"

    def failures(self, provider: Provider, account: str) -> str:
        """Sorted set: failed (4xx) request times of the last minute."""
        return f"{self.prefix}failures:{provider.value}:{account}"

    def pause(self, provider: Provider, account: str) -> str:
        """String with TTL: why the provider account is paused, while it is."""
        return f"{self.prefix}pause:{provider.value}:{account}"

    def unreachable(self, provider: Provider, account: str) -> str:
        """Hash with TTL: the account's streak of failed connections (`worker.reachability`)."""
        return f"{self.prefix}unreachable:{provider.value}:{account}"

    def probe_lock(self, provider: Provider, account: str) -> str:
        """String with TTL: held by the one process probing an unreachable account right now."""
        return f"{self.prefix}probe-lock:{provider.value}:{account}"

    def rate_tat(self, provider: Provider, account: str) -> str:
        """String: the shared limiter's next free slot (Redis server time, microseconds)."""
        return f"{self.prefix}rate-tat:{provider.value}:{account}"

    def pause_reported(self, provider: Provider, account: str) -> str:
        """String: set (NX) by the one process that reports a configuration pause."""
        return f"{self.prefix}pause-reported:{provider.value}:{account}"

    def refused_jobs(self) -> str:
        """List: jobs no worker may run (JSON, newest first, capped; `worker.refused`)."""
        return f"{self.prefix}refused-jobs"

    def health(self, provider: Provider) -> str:
        """String with TTL: arq's health check of the workers draining one provider's queue."""
        return f"{self.prefix}health:{provider.value}"

    def workers(self) -> str:
        """Hash: worker process id -> its last heartbeat (JSON), written by `worker.fleet`."""
        return f"{self.prefix}workers"

    def throughput(self, provider: Provider) -> str:
        """Sorted set: finished invoice events scored by time, for rates and ETA."""
        return f"{self.prefix}throughput:{provider.value}"

    def account_throughput(self, who: str) -> str:
        """Sorted set: one provider account's finished invoice events of the last two
        minutes, scored by time (its own rate); `who` as for `account_totals`."""
        return f"{self.prefix}account-throughput:{who}"

    def webhook_batches(self) -> str:
        """Set: batches with a callback URL whose completion is not yet announced."""
        return f"{self.prefix}webhooks:batches"

    def webhook_each(self) -> str:
        """Sorted set: batches whose callback gets one webhook per invoice outcome, scored by
        when their completion was announced (0: not yet)."""
        return f"{self.prefix}webhooks:each"

    def webhook_cursor(self, provider: Provider) -> str:
        """String: the throughput score (ms) up to which invoice outcomes were announced."""
        return f"{self.prefix}webhooks:cursor:{provider.value}"

    def webhook_outbox(self) -> str:
        """Sorted set: webhook delivery ids scored by their next attempt time (ms)."""
        return f"{self.prefix}webhooks:outbox"

    def webhook_delivery(self, delivery_id: str) -> str:
        """Hash: one pending webhook delivery (url, body, batch, attempts, created_at_ms)."""
        return f"{self.prefix}webhooks:delivery:{delivery_id}"

    def webhook_attempts(self, batch_id: str) -> str:
        """List: every delivery attempt of a batch's webhooks (JSON), newest last, capped."""
        return f"{self.prefix}webhooks:attempts:{batch_id}"

    def webhook_lock(self) -> str:
        """String with TTL: the one worker process delivering webhooks right now."""
        return f"{self.prefix}webhooks:lock"

    def epoch(self) -> str:
        """Hash: the Redis server instance (run id) the ledger was last checked on, its
        persistence policy and the workers' lease and landing window (`worker.epoch`)."""
        return f"{self.prefix}epoch"

    def epochs(self) -> str:
        """List: the last recoveries after Redis came back as a new instance (JSON),
        newest first."""
        return f"{self.prefix}epochs"

    def metrics(self) -> str:
        """Hash: counters and histogram buckets flushed by every worker process."""
        return f"{self.prefix}metrics"

    def per_minute(self, provider: Provider, minute: int | str) -> str:
        """Hash with TTL: invoices created and rejected in one minute (Unix time // 60)."""
        return f"{self.prefix}per-minute:{provider.value}:{minute}"
