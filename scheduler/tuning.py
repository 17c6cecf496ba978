"""Tuning numbers: the intervals, batch sizes and bounds that are not settings, each with why.

Settings (`scheduler.config.settings`) are what an operator chooses; these are what the code
needs to behave well whatever is chosen. Seconds are `_S`, counts are plain.
"""

# ---- the main loop (scheduler.daemon.loop) ---------------------------------------------------
LOOP_WAIT_S = 0.2  # the longest the loop sleeps between ticks; a handed-over slot or file wakes it at once
REQUEST_POLL_S = 0.5  # how often the loop reads the inbox (CLI requests) when nothing else makes it look
HEARTBEAT_FRACTION = 1 / 3  # the lease is renewed every lease_ttl * this: two renewals may fail before it lapses
STATUS_INTERVAL_S = 10.0  # systemd STATUS= line: often enough for `systemctl status`, rare enough to be free
AUDIT_HEAD_LOG_S = 60.0  # the audit head is logged this often while the chain grows: the log's copy lags by that much
STANDBY_POLL_S = 0.5  # a standby reads the lease row this often: it takes over at most this long after a lapse
PG_IDLE_IN_TRANSACTION_S = 2.0  # PostgreSQL ends a session idle this long inside a transaction (a frozen daemon's)
DB_RETRY_S = 1.0  # after a state database error the loop waits this long; children keep running meanwhile
THREAD_STOP_S = 5.0  # the longest shutdown waits for a side thread (timer, watcher, feed) before going on

# ---- starting queued runs (scheduler.runs.launcher) ------------------------------------------
QUEUE_POLL_S = 0.5  # without a wake-up the queue is read this often (jitter and retry back-off expire by time)
MAX_LAUNCHES_PER_PASS = 16  # launches per pass, so due slots never wait behind a long row of spawns
QUEUE_READ_LIMIT = 1000  # queued runs read per pass, at most `free` of each job

# ---- what other processes ask (scheduler.store.inbox) ----------------------------------------
INBOX_BATCH = 1000  # requests claimed per transaction

# ---- schedules.yaml edits (scheduler.daemon.config_monitor) ----------------------------------
CONFIG_POLL_S = 0.25  # how often the config file's inode, mtime and size are compared
CONFIG_DEBOUNCE_S = 0.5  # a change counts once the file has been quiet this long (editors save in bursts)

# ---- reading schedules.yaml (scheduler.config) -------------------------------------------------
CONFIG_MAX_BYTES = 10 * 1024 * 1024  # default of the config_max_bytes setting: far above any real schedules.yaml
YAML_MAX_DEPTH = 64  # nesting of mappings and lists; a real file needs about 6
YAML_MAX_VALUES = 2_000_000  # values after aliases are expanded: 10,000 jobs need about 150,000; a bomb, billions

# ---- catch-up (scheduler.policy.catch_up) ----------------------------------------------------
CATCH_UP_AUDIT_EACH = 200  # missed slots audited one by one per job; the rest go into one summary event
CATCH_UP_WINDOW_LIMIT = 100_000  # slots examined at most inside one grace window (an every-1s job over 24 h)

# ---- file-watch jobs (scheduler.watch.folder_watcher) ----------------------------------------
WATCH_RETRY_S = 2.0  # a missing folder or a failed watcher is tried again this often
WATCH_FOUND_WAIT_S = 60.0  # catchup latest: the longest the files found at start wait for each other
WATCH_EVENT_WAIT_MS = 100  # longest wait inside watchfiles before settle deadlines are looked at again

# ---- the committed audit trail's followers (scheduler.feed) ----------------------------------
FEED_POLL_S = 0.25  # how often the audit feed looks for events committed by any process
FEED_BATCH = 2000  # events read per query
WEBHOOK_WORKERS = 4  # deliveries in parallel; retries wait in a heap and hold no worker
WEBHOOK_MAX_PENDING = 1000  # queued plus waiting for a retry; beyond it new deliveries are dropped (and audited)
WEBHOOK_MAX_ERROR = 300  # characters of a receiver's error kept in the audit trail

# ---- the HTTP API (scheduler.api) -------------------------------------------------------------
API_AUDIT_FLUSH_S = 0.2  # API audit events are written in batches this often, off the request path
API_TRIGGER_WAIT_S = 60.0  # the longest a trigger request waits for its transaction before failing
TRIGGER_MAX_BATCH = 500  # triggers recorded per transaction
TRIGGER_LINGER_S = 0.003  # a batch waits this long for company when triggers arrive back to back
TRIGGER_BUSY_S = 0.02  # a batch this soon after the previous one means triggers are arriving back to back
API_NEXT_FIRES = 5  # next fire times shown per job
API_ANONYMOUS_AUDIT_S = 60.0  # requests without a valid key: one audit event per client address this often
API_ANONYMOUS_MAX_CLIENTS = 10_000  # addresses counted apart in one interval; the rest share one count
API_RATE_MAX_CLIENTS = 100_000  # rate-limit buckets kept (one per key or address); full ones are dropped first
API_ACCEPT_BATCH = 64  # connections accepted per wake-up of the server (also its listen backlog)
API_KEEP_ALIVE_S = 5  # an idle kept-alive connection is closed after this many seconds
API_REFUSAL_LOG_S = 60.0  # "too many connections" and other per-connection refusals are logged this often
OPEN_FILES_WANTED = 65536  # the daemon raises its soft RLIMIT_NOFILE to this (or the hard limit) at start

# ---- child processes (scheduler.runs) ---------------------------------------------------------
PIPELINE_CHECK_TIMEOUT_S = 300.0  # default of the pipeline_check_timeout setting: the check imports ZenML and
# every pipeline module, so minutes mean a hang
LOG_TAIL_CHARS = 400  # of a child's output kept as the error of a run that ended without a result
# after: triggers and the follower child
FOLLOWER_INTERVAL_S = 1.0  # how often the follower asks ZenML for runs that ended (setting follower_interval)
FOLLOWER_OVERLAP_S = 60.0  # it re-reads this far before its cursor: a run committed late is not missed
FOLLOWER_BACKOFF_MIN_S = 1.0  # restart delays after the follower died: doubling from here...
FOLLOWER_BACKOFF_MAX_S = 60.0  # ...up to here (and reset after it ran this long)
FOLLOWER_STOP_S = 5.0  # SIGTERM to SIGKILL when the follower is stopped
AFTER_PASS_S = 1.0  # how often the loop looks at upstream runs waiting for time (a debounce, their ZenML record)
AFTER_SAFETY_S = 30.0  # and how often when nothing waits (a wake-up that got lost is caught here)
AFTER_BATCH = 500  # upstream runs handled per pass
AFTER_DETAILS_WAIT_S = 300.0  # how long an own run waits for the follower's record of its metadata and outputs
