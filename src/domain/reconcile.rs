//! The nightly jobs: which exist, how a run of one stands, and which are due now. Pure: the
//! scheduler (`actors::scheduler`) gathers the runs on record and asks [`due`]; `heft reconcile`
//! runs one day's jobs when a person asks.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc};

use super::calendar::{SHANGHAI, business_day};
use super::names::named_enum;
use super::payment::Channel;

named_enum! {
    /// One night's work for one business day. `Job::ALL` is in the order a night runs them:
    /// settlement last, as it takes the fees from the bills and the losses from the stocktake.
    pub enum Job {
        /// Each lane's stock by weight against its book.
        Stock = "stock",
        /// The WeChat Pay bill against Heft's payments and refunds.
        BillsWechat = "bills_wechat",
        /// The Alipay bill.
        BillsAlipay = "bills_alipay",
        /// The day's figures per cabinet and product.
        Settlement = "settlement",
    }
}

named_enum! {
    /// Where a run stands.
    pub enum RunStatus {
        Running = "running",
        Done = "done",
        /// The platform has not published the day's bill yet: tried again later.
        Waiting = "waiting",
        Failed = "failed",
    }
}

named_enum! {
    /// What `--only` picks: one part of a night.
    pub enum Part {
        Stock = "stock",
        Bills = "bills",
        Settlement = "settlement",
    }
}

impl Job {
    /// The bill job of a platform.
    pub fn bills(channel: Channel) -> Job {
        match channel {
            Channel::Wechat => Job::BillsWechat,
            Channel::Alipay => Job::BillsAlipay,
        }
    }

    /// The platform whose bill a bill job reconciles.
    pub fn channel(self) -> Option<Channel> {
        match self {
            Job::BillsWechat => Some(Channel::Wechat),
            Job::BillsAlipay => Some(Channel::Alipay),
            Job::Stock | Job::Settlement => None,
        }
    }

    /// The jobs of a night, in order, or only those of `part`.
    pub fn of(part: Option<Part>) -> impl Iterator<Item = Job> {
        Job::ALL.iter().copied().filter(move |j| part.is_none_or(|p| j.part() == p))
    }

    pub fn part(self) -> Part {
        match self {
            Job::BillsWechat | Job::BillsAlipay => Part::Bills,
            Job::Stock => Part::Stock,
            Job::Settlement => Part::Settlement,
        }
    }
}

/// When each part runs (local time, Asia/Shanghai, on the day after the business day), and how
/// the scheduler waits; `reconcile.*` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timetable {
    pub stock_at: NaiveTime,
    pub bills_at: NaiveTime,
    pub settlement_at: NaiveTime,
    /// Days back a starting node looks for nights it missed.
    pub catch_up_days: i64,
    /// A waiting or failed run is tried again this long after it last started.
    pub retry_after: Duration,
    /// A run still `running` this long after it started was cut off (its node died).
    pub stale_after: Duration,
}

impl Timetable {
    /// When `job` may first run for `day`, UTC.
    pub fn starts(&self, job: Job, day: NaiveDate) -> Option<DateTime<Utc>> {
        let at = match job.part() {
            Part::Stock => self.stock_at,
            Part::Bills => self.bills_at,
            Part::Settlement => self.settlement_at,
        };
        let local = day.succ_opt()?.and_time(at);
        local.and_local_timezone(SHANGHAI).single().map(|t| t.with_timezone(&Utc))
    }
}

/// A run on record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunState {
    pub job: Job,
    pub day: NaiveDate,
    pub status: RunStatus,
    /// UTC.
    pub started_at: NaiveDateTime,
}

/// The runs due at `now`, oldest day first and in a night's order within a day: each job of each
/// day of the last `catch_up_days` whose time has come and that is not done, not running (unless
/// its run went stale) and not waiting out its retry.
pub fn due(now: DateTime<Utc>, table: &Timetable, runs: &[RunState]) -> Vec<(Job, NaiveDate)> {
    let today = business_day(now);
    let mut out = Vec::new();
    for back in (1..=table.catch_up_days).rev() {
        let day = today - Duration::days(back);
        for job in Job::ALL.iter().copied() {
            if table.starts(job, day).is_none_or(|at| now < at) {
                continue;
            }
            let run = runs.iter().find(|r| r.job == job && r.day == day);
            let since = |r: &RunState| now.naive_utc() - r.started_at;
            let wanted = match run {
                None => true,
                Some(r) => match r.status {
                    RunStatus::Done => false,
                    RunStatus::Running => since(r) >= table.stale_after,
                    RunStatus::Waiting | RunStatus::Failed => since(r) >= table.retry_after,
                },
            };
            if wanted {
                out.push((job, day));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn table() -> Timetable {
        Timetable {
            stock_at: NaiveTime::from_hms_opt(3, 0, 0).expect("time"),
            bills_at: NaiveTime::from_hms_opt(10, 30, 0).expect("time"),
            settlement_at: NaiveTime::from_hms_opt(11, 0, 0).expect("time"),
            catch_up_days: 3,
            retry_after: Duration::minutes(30),
            stale_after: Duration::hours(2),
        }
    }

    /// Beijing time on December `d`.
    fn at(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        SHANGHAI.with_ymd_and_hms(2026, 12, d, h, m, 0).single().expect("time").with_timezone(&Utc)
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, d).expect("day")
    }

    fn run(job: Job, d: u32, status: RunStatus, started: DateTime<Utc>) -> RunState {
        RunState { job, day: day(d), status, started_at: started.naive_utc() }
    }

    #[test]
    fn each_part_waits_for_its_hour_of_the_next_day() {
        let t = table();
        let of_the_9th =
            |now| -> Vec<Job> { due(now, &t, &[]).into_iter().filter(|(_, d)| *d == day(9)).map(|(j, _)| j).collect() };
        assert!(of_the_9th(at(10, 2, 59)).is_empty(), "nothing for the 9th before 03:00 on the 10th");
        assert_eq!(of_the_9th(at(10, 10, 29)), [Job::Stock], "stock first, bills from 10:30");
        assert_eq!(of_the_9th(at(10, 10, 30)), [Job::Stock, Job::BillsWechat, Job::BillsAlipay]);
        assert_eq!(of_the_9th(at(10, 11, 0)), Job::ALL.to_vec(), "in a night's order");
        assert!(due(at(10, 2, 59), &t, &[]).iter().all(|(_, d)| *d < day(9)));
    }

    #[test]
    fn missed_nights_run_oldest_first_and_done_ones_never_again() {
        let t = table();
        let now = at(10, 12, 0);
        let days: Vec<NaiveDate> = due(now, &t, &[]).into_iter().map(|(_, d)| d).collect();
        assert_eq!(days.first(), Some(&day(7)), "three days back");
        assert!(days.windows(2).all(|w| w[0] <= w[1]));
        let done: Vec<RunState> = Job::ALL.iter().map(|j| run(*j, 7, RunStatus::Done, at(8, 11, 0))).collect();
        assert!(due(now, &t, &done).iter().all(|(_, d)| *d != day(7)));
    }

    #[test]
    fn a_waiting_bill_is_tried_again_after_the_retry_and_a_stale_run_is_taken_over() {
        let t = table();
        let waiting = [run(Job::BillsWechat, 9, RunStatus::Waiting, at(10, 10, 30))];
        let wechat_due = |now| due(now, &t, &waiting).contains(&(Job::BillsWechat, day(9)));
        assert!(!wechat_due(at(10, 10, 59)));
        assert!(wechat_due(at(10, 11, 0)));
        let running = [run(Job::BillsAlipay, 9, RunStatus::Running, at(10, 10, 30))];
        let alipay_due = |now| due(now, &t, &running).contains(&(Job::BillsAlipay, day(9)));
        assert!(!alipay_due(at(10, 12, 29)), "still running elsewhere");
        assert!(alipay_due(at(10, 12, 30)), "its node died");
    }
}
