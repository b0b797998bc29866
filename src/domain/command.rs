//! Commands to a cabinet: what kinds there are (the `down/{kind}` topics) and how each ended.

use super::names::named_enum;

named_enum! {
    /// What Heft sends to a cabinet (`cabinets/{sn}/down/{kind}`).
    pub enum DownKind {
        LoginAck = "login_ack",
        Open = "open",
        PriceTags = "price_tags",
        Calibrate = "calibrate",
        Config = "config",
        Reboot = "reboot",
        /// Stream weights at the after-close cadence for `after_close_s`: a session taken up
        /// after a crash needs closed-door readings now, not at the closed cadence.
        Weigh = "weigh",
    }
}

named_enum! {
    /// Where a command stands (`commands.status`).
    pub enum CommandStatus {
        /// Sent, or about to be; no answer yet.
        Pending = "pending",
        /// The cabinet carried it out.
        Acked = "acked",
        /// The cabinet refused it, or could not carry it out.
        Failed = "failed",
        /// No answer after every retry, or the actor that sent it stopped.
        TimedOut = "timed_out",
    }
}
