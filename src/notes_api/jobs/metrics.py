from prometheus_client import Counter, Gauge, Histogram

JOB_ATTEMPTS = Counter("jobs_attempts_total", "Job attempts started", ["kind"])
JOB_OUTCOMES = Counter("jobs_outcomes_total", "Job attempt outcomes", ["kind", "outcome"])
JOB_DURATION = Histogram(
    "jobs_duration_seconds",
    "Time spent running one attempt",
    ["kind"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
QUEUE_DEPTH = Gauge("jobs_queue_depth", "Jobs queued and processing", ["status"])
