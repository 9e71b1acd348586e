"""Result webhooks: a batch's callback URL gets a signed POST when it completes
and, if asked, one per invoice outcome.

- `subscriptions`: register a batch's callback (the API does it), read its
  delivery attempts (the API and the dashboard show them).
- `signing`: the `Invoicer-Signature` header (`t=<unix>,v1=<hex HMAC-SHA256
  of "t.body">` with `INVOICER_WEBHOOK_SECRET`), and its verification.
- `dispatcher`: what the worker runtime runs once a second: it notices
  completed batches and finished invoices, puts their events in a Redis
  outbox and delivers them, retrying with backoff for a day.

Who delivers, and why workers: `invoicer web` may not be running (a batch
enqueued from the CLI or Python still has its callback), while workers are
running whenever a batch makes progress. The outbox is in Redis, so a
delivery survives any process; a lock lets one worker process deliver at a
time. Every attempt is recorded per batch. See docs/webhooks.md.
"""
