"""How gpubox's modules retry their AWS calls (amazon.aws's decorator, as its own modules use it)."""

from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

# EC2's throttling and brief outages waited out, briefly: at most 5 tries and under 40 s of AWSRetry's waits per call
# (botocore retries within each try too); the decorator's default, 10 tries, can wait over 5 minutes in silence.
RETRY = AWSRetry.jittered_backoff(retries=5, delay=3, max_delay=15)
