//! The course of a session at an open door (purchase, restock, maintenance).

/// Where a purchase's door stands when the order's door-open check asks the cabinet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// `open` was sent (again).
    Sent,
    /// `open` went out before and the door has not opened (asked without sending).
    Waiting,
    /// The door has already opened (its record may have been lost: it is written again). The
    /// order must not be cancelled.
    DoorOpened,
    /// No actor holds a session for the order (none on this node, or it let go).
    NotHeld,
}
