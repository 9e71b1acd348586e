"""arq's wire format as we write it: the same bytes arq writes, arq's own key names."""

from __future__ import annotations

import json

import arq.constants
from arq.jobs import deserialize_job as arq_deserialize_job
from arq.jobs import serialize_job as arq_serialize_job

from worker import keys
from worker.arq_job import JOB_FUNCTION, deserialize_job, job_template, serialize_job


def test_serializer_is_json() -> None:
    data = {"t": 1, "f": JOB_FUNCTION, "a": ["maast:A"], "k": {}, "et": 5}
    assert json.loads(serialize_job(data)) == data
    assert deserialize_job(serialize_job(data)) == data


def test_the_scripts_template_writes_what_arq_writes() -> None:
    # What the Lua `job_body` builds from the template, for one invoice key.
    before, between, after = job_template()
    ours = f"{before}{json.dumps(['maast@eu:INV-1'])}{between}{1234567}{after}"
    theirs = arq_serialize_job(
        JOB_FUNCTION, ("maast@eu:INV-1",), {}, 1, 1234567, serializer=serialize_job
    )
    assert ours.encode() == theirs
    job = arq_deserialize_job(ours.encode(), deserializer=deserialize_job)
    assert (job.function, list(job.args), job.job_try) == (JOB_FUNCTION, ["maast@eu:INV-1"], 1)


def test_arq_key_names_are_arqs() -> None:
    assert arq.constants.job_key_prefix == keys.ARQ_JOB
    assert arq.constants.in_progress_key_prefix == keys.ARQ_IN_PROGRESS
    assert arq.constants.retry_key_prefix == keys.ARQ_RETRY
    assert arq.constants.result_key_prefix == keys.ARQ_RESULT
    assert arq.constants.abort_jobs_ss == keys.ARQ_ABORT
