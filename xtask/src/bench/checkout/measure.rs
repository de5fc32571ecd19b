//! What the run costs: MongoDB commands and Kafka deliveries counted by the services'
//! `/metrics`, each process's CPU, the load average.

use std::{collections::BTreeMap, time::Duration};

use anyhow::Result;

use crate::{
    services::{self, Ports},
    stack::Stack,
};

/// Counters summed over every service's `/metrics`, by metric and label set.
#[derive(Default, Clone)]
pub(super) struct Counters(pub(super) BTreeMap<String, f64>);

impl Counters {
    pub(super) async fn read(client: &reqwest::Client, ports: &Ports) -> Result<Counters> {
        let mut all = BTreeMap::new();
        for service in services::built() {
            let text = client
                .get(format!("{}/metrics", ports.url(service)))
                .send()
                .await?
                .text()
                .await?;
            for line in text.lines().filter(|l| l.starts_with("storefront_")) {
                let Some((series, value)) = line.rsplit_once(' ') else {
                    continue;
                };
                // Drop the service label: a series is summed over services, and kept per service
                // under its own name.
                let value: f64 = value.parse().unwrap_or(0.0);
                *all.entry(strip_service(series)).or_insert(0.0) += value;
                *all.entry(format!("{}|{series}", service.name))
                    .or_insert(0.0) += value;
            }
        }
        Ok(Counters(all))
    }

    pub(super) fn since(&self, before: &Counters) -> Counters {
        Counters(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v - before.0.get(k).copied().unwrap_or(0.0)))
                .collect(),
        )
    }

    /// The sum over series of `metric` whose labels contain every one of `labels`.
    pub(super) fn sum(&self, metric: &str, labels: &[&str]) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| !k.contains('|'))
            .filter(|(k, _)| k.split('{').next() == Some(metric))
            .filter(|(k, _)| labels.iter().all(|l| k.contains(l)))
            .map(|(_, v)| v)
            .sum()
    }

    /// `metric` summed per value of `label`.
    pub(super) fn by(&self, metric: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (k, v) in self.0.iter().filter(|(k, _)| !k.contains('|')) {
            if k.split('{').next() != Some(metric) {
                continue;
            }
            if let Some(value) = label_value(k, label) {
                *out.entry(value).or_insert(0.0) += v;
            }
        }
        out
    }
}

pub(super) fn strip_service(series: &str) -> String {
    let Some((name, labels)) = series.split_once('{') else {
        return series.to_owned();
    };
    let kept: Vec<&str> = labels
        .trim_end_matches('}')
        .split(',')
        .filter(|l| !l.starts_with("service="))
        .collect();
    format!("{name}{{{}}}", kept.join(","))
}

pub(super) fn label_value(series: &str, label: &str) -> Option<String> {
    let labels = series.split_once('{')?.1.trim_end_matches('}');
    labels.split(',').find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k == label).then(|| v.trim_matches('"').to_owned())
    })
}

/// CPU time (clock ticks) of every process of one process group: each stack process is started in
/// its own (nginx's workers and Python's children count with it).
pub(super) fn group_ticks(pgid: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| {
            // After the command name: state ppid pgrp … utime(14) stime(15).
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let pgrp: u32 = fields.get(2)?.parse().ok()?;
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            (pgrp == pgid).then_some(utime + stime)
        })
        .sum()
}

pub(super) fn own_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| -> u64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0) };
    field(11) + field(12)
}

/// CPU ticks of each process of the stack, and of the bench itself.
pub(super) fn cpu(stack: &Stack) -> Vec<(String, u64)> {
    let mut ticks: Vec<(String, u64)> = stack
        .procs
        .iter()
        .map(|p| (p.name.clone(), group_ticks(p.pid)))
        .collect();
    ticks.push(("(bench)".into(), own_ticks()));
    ticks
}

/// Percent of one core each process used between two readings, busiest first.
pub(super) fn cpu_share(
    before: &[(String, u64)],
    after: &[(String, u64)],
    over: Duration,
) -> Vec<(String, f64)> {
    // Linux reports in USER_HZ, 100 on every platform this runs on.
    let hz = 100.0;
    let mut shares: Vec<(String, f64)> = after
        .iter()
        .map(|(name, t)| {
            let was = before
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| *t)
                .unwrap_or(0);
            (
                name.clone(),
                (t.saturating_sub(was)) as f64 / hz / over.as_secs_f64() * 100.0,
            )
        })
        .collect();
    shares.sort_by(|a, b| b.1.total_cmp(&a.1));
    shares
}

pub(super) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
