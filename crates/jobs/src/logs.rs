//! Every line a job's processes print, and the service's own lines, kept per job and queried the
//! way Cloud Logging's `entries:list` is (by time, then insert id).
//!
//! Entries of a job have strictly increasing timestamps (nanoseconds; a line printed within the
//! same nanosecond as the last is moved 1 ns later) and insert ids that sort the same way
//! (zero-padded sequence numbers). gcloud pages through logs with "timestamp ≥ the last one it
//! saw" and drops what it already printed by (timestamp, insertId), so both orders must agree.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// Log severities, as Cloud Logging names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
        }
    }

    /// The severity of a line the trainer printed: its `error:` / `warning:` prefixes.
    pub fn of_trainer_line(line: &str) -> Severity {
        let lower = line.trim_start().to_ascii_lowercase();
        // `error: …` / `ERROR …`, but not a word that starts so (`errorCount: 0`).
        let word = |prefix: &str| {
            lower
                .strip_prefix(prefix)
                .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_alphanumeric()))
        };
        if word("error") {
            Severity::Error
        } else if word("warning") {
            Severity::Warning
        } else {
            Severity::Info
        }
    }
}

/// The task name of the service's own lines (gcloud prints it in the task column).
pub const SERVICE_TASK: &str = "service";
/// The task name of the master replica's lines, as Cloud ML Engine names it.
pub const MASTER_TASK: &str = "master-replica-0";

/// One log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the job's log, from 1; the insert id is it zero-padded.
    pub sequence: u64,
    /// Nanoseconds since the Unix epoch.
    pub timestamp_nanos: i64,
    pub severity: Severity,
    /// `service`, `master-replica-0`, or a trial's task.
    pub task: String,
    /// The trial the line belongs to, for tuning jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial: Option<String>,
    pub message: String,
}

impl LogEntry {
    /// The insert id: the sequence number, zero-padded so ids sort like entries.
    pub fn insert_id(&self) -> String {
        format!("{:012}", self.sequence)
    }

    /// RFC 3339 with nanoseconds, UTC (`2026-12-04T13:00:00.123456789Z`).
    pub fn timestamp(&self) -> String {
        format_nanos(self.timestamp_nanos)
    }
}

/// RFC 3339 with nanoseconds, UTC.
pub fn format_nanos(nanos: i64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(nanos).to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Parses an RFC 3339 time (any fraction, `Z` or an offset) into nanoseconds since the epoch.
pub fn parse_nanos(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text)
        .ok()?
        .with_timezone(&Utc)
        .timestamp_nanos_opt()
}

/// Now, in nanoseconds since the epoch.
pub fn now_nanos() -> i64 {
    Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// Now as the API prints times: RFC 3339 UTC, whole seconds (`2026-12-04T13:00:00Z`).
pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Where a query starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// `timestamp >= T`.
    AtOrAfter(i64),
    /// `timestamp > T`.
    After(i64),
    /// `(timestamp = T AND insertId > I) OR timestamp > T`: after one entry.
    AfterEntry(i64, String),
}

/// Which entries of a job a reader wants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogQuery {
    pub job_id: String,
    /// Only this task's lines.
    pub task: Option<String>,
    pub since: Option<Since>,
    /// `timestamp < T`.
    pub before: Option<i64>,
}

impl LogQuery {
    pub fn matches(&self, entry: &LogEntry) -> bool {
        if self.task.as_ref().is_some_and(|task| *task != entry.task) {
            return false;
        }
        if self
            .before
            .is_some_and(|before| entry.timestamp_nanos >= before)
        {
            return false;
        }
        match &self.since {
            None => true,
            Some(Since::AtOrAfter(t)) => entry.timestamp_nanos >= *t,
            Some(Since::After(t)) => entry.timestamp_nanos > *t,
            Some(Since::AfterEntry(t, id)) => {
                entry.timestamp_nanos > *t
                    || (entry.timestamp_nanos == *t && entry.insert_id() > *id)
            }
        }
    }
}

/// One job's lines, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobLog {
    pub entries: Vec<LogEntry>,
}

impl JobLog {
    /// Appends a line now (or 1 ns after the last one, to keep timestamps strictly increasing).
    pub fn push(&mut self, severity: Severity, task: &str, trial: Option<&str>, message: &str) {
        let last = self.entries.last().map(|e| (e.sequence, e.timestamp_nanos));
        let now = now_nanos();
        let timestamp_nanos = match last {
            Some((_, t)) if now <= t => t + 1,
            _ => now,
        };
        self.entries.push(LogEntry {
            sequence: last.map_or(1, |(s, _)| s + 1),
            timestamp_nanos,
            severity,
            task: task.to_string(),
            trial: trial.map(str::to_string),
            message: message.to_string(),
        });
    }

    /// The persisted form: one JSON entry per line.
    pub fn to_json_lines(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for entry in &self.entries {
            if let Ok(line) = serde_json::to_vec(entry) {
                out.extend_from_slice(&line);
                out.push(b'\n');
            }
        }
        out
    }

    /// Reads [`JobLog::to_json_lines`] back; `Err` names the first bad line (1-based).
    pub fn from_json_lines(bytes: &[u8]) -> Result<JobLog, String> {
        let mut entries = Vec::new();
        for (index, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let entry: LogEntry = serde_json::from_slice(line)
                .map_err(|e| format!("line {}: not a log entry: {e}", index + 1))?;
            entries.push(entry);
        }
        Ok(JobLog { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_stay_ordered() {
        let mut log = JobLog::default();
        for i in 0..50 {
            log.push(Severity::Info, MASTER_TASK, None, &format!("line {i}"));
        }
        for pair in log.entries.windows(2) {
            assert!(pair[0].timestamp_nanos < pair[1].timestamp_nanos);
            assert!(pair[0].insert_id() < pair[1].insert_id());
        }
        let first = &log.entries[0];
        assert_eq!(parse_nanos(&first.timestamp()), Some(first.timestamp_nanos));
        assert_eq!(
            parse_nanos("1970-01-01T01:00:00.000000000Z"),
            Some(3_600_000_000_000)
        );
        assert_eq!(
            parse_nanos("2018-06-01T10:02:01.5+01:00"),
            parse_nanos("2018-06-01T09:02:01.500Z")
        );
        let back = JobLog::from_json_lines(&log.to_json_lines()).unwrap();
        assert_eq!(back, log);
        let bad = JobLog::from_json_lines(b"{}\n").unwrap_err();
        assert!(bad.starts_with("line 1: not a log entry"), "{bad}");
    }

    #[test]
    fn queries_follow_gclouds_paging() {
        let mut log = JobLog::default();
        log.push(Severity::Info, SERVICE_TASK, None, "a");
        log.push(Severity::Error, MASTER_TASK, None, "b");
        log.push(Severity::Info, MASTER_TASK, None, "c");
        let [a, b, c] = [&log.entries[0], &log.entries[1], &log.entries[2]];
        let query = |since, task: Option<&str>| LogQuery {
            job_id: "j".into(),
            task: task.map(str::to_string),
            since,
            before: Some(c.timestamp_nanos),
        };
        let picked = |q: &LogQuery| -> Vec<String> {
            log.entries
                .iter()
                .filter(|e| q.matches(e))
                .map(|e| e.message.clone())
                .collect()
        };
        assert_eq!(picked(&query(None, None)), ["a", "b"]);
        assert_eq!(
            picked(&query(Some(Since::AtOrAfter(b.timestamp_nanos)), None)),
            ["b"]
        );
        assert_eq!(
            picked(&query(Some(Since::After(a.timestamp_nanos)), None)),
            ["b"]
        );
        assert_eq!(
            picked(&query(
                Some(Since::AfterEntry(a.timestamp_nanos, a.insert_id())),
                None
            )),
            ["b"]
        );
        assert_eq!(picked(&query(None, Some(SERVICE_TASK))), ["a"]);
        assert_eq!(Severity::of_trainer_line("error: boom"), Severity::Error);
        assert_eq!(Severity::of_trainer_line("warning: x"), Severity::Warning);
        assert_eq!(Severity::of_trainer_line("Epoch 1/1"), Severity::Info);
    }
}
