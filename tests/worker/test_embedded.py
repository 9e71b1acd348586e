from pathlib import Path

import redis

from worker import embedded


def test_embedded_redis_starts_once_keeps_aof_and_stops(tmp_path: Path) -> None:
    url, started = embedded.ensure_running(tmp_path)
    try:
        assert started
        again, started_again = embedded.ensure_running(tmp_path)
        assert (again, started_again) == (url, False)
        client = redis.Redis.from_url(url)
        client.set("k", "v")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.close()
    finally:
        assert embedded.stop(tmp_path)
    assert not embedded.is_running(tmp_path)
    # AOF on disk: a restart finds the data again.
    url, _ = embedded.ensure_running(tmp_path)
    try:
        client = redis.Redis.from_url(url)
        assert client.get("k") == b"v"
        client.close()
    finally:
        embedded.stop(tmp_path)
