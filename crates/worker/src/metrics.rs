//! Metric names and helpers (the `metrics` facade; the exporter is installed by the binary).

use coldsend_core::account::AccountId;

pub fn send_outcome(account: &AccountId, outcome: &'static str) {
    metrics::counter!("coldsend_sends_total", "account" => account.to_string(), "outcome" => outcome).increment(1);
}

pub fn cap(account: &AccountId, used: u32, cap: u32) {
    metrics::gauge!("coldsend_cap_used", "account" => account.to_string()).set(f64::from(used));
    metrics::gauge!("coldsend_cap_effective", "account" => account.to_string()).set(f64::from(cap));
}

pub fn job(queue: &'static str, ok: bool, seconds: f64) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!("coldsend_jobs_total", "queue" => queue, "outcome" => outcome).increment(1);
    metrics::histogram!("coldsend_job_duration_seconds", "queue" => queue).record(seconds);
}
