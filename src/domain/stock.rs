//! Book stock: why a lane's stock changed (the ledger's reasons).

use super::names::named_enum;

named_enum! {
    /// Why book stock changed (`stock_ledger.reason`).
    pub enum StockReason {
        /// Sold in a settled purchase.
        Sale = "sale",
        /// Moved by a shopper from one lane to another (not sold).
        Move = "move",
        /// Set by a person in the review queue.
        Review = "review",
        /// Put in (or taken out) by a restocker, counted by weight.
        Restock = "restock",
    }
}
