//! The review queue: orders a person must look at.

use super::names::named_enum;

named_enum! {
    /// Why a person must look at an order (`review_cases.kind`).
    pub enum CaseKind {
        /// The settlement could not read the weights.
        Weights = "weights",
        /// The shopper disputes what they were charged.
        Appeal = "appeal",
    }
}

named_enum! {
    /// Where a review case stands (`review_cases.status`).
    pub enum CaseStatus {
        Open = "open",
        Resolved = "resolved",
    }
}
