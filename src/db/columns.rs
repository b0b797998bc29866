//! How typed values are stored: every status, kind and outcome as its word in a TEXT column (the
//! word its `named_enum!` declaration gives it), money as fen in a BIGINT, weights as grams in a
//! DOUBLE. Mapped here once, so models hold the types and no query compares strings.

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::{BigInt, Double, Text};

use crate::domain::alert::{AlertCode, Audience, Severity};
use crate::domain::bills::{BillCaseKind, BillCaseStatus, EntryKind, Resolution};
use crate::domain::cabinet::{CabinetEventKind, CabinetStatus};
use crate::domain::command::{CommandStatus, DownKind};
use crate::domain::liveness::Liveness;
use crate::domain::operator::Role;
use crate::domain::order::OrderStatus;
use crate::domain::outbox::OutboxStatus;
use crate::domain::payment::{Channel, EventOutcome, PaymentState, RefundStatus};
use crate::domain::reconcile::{Job, RunStatus};
use crate::domain::restock::TaskStatus;
use crate::domain::review::{CaseKind, CaseStatus};
use crate::domain::session::{Outcome, SessionKind};
use crate::domain::stock::StockReason;
use crate::domain::stocktake::{FindingKind, LaneStatus, Unreadable};
use crate::domain::units::{Fen, Grams};
use crate::domain::weight::ReadingKind;

/// Store each of these types as its word in a TEXT column. A word the type does not know is a
/// deserialization error naming both, never a silent default.
macro_rules! stored_as_text {
    ($($t:ident),+ $(,)?) => { $(
        // `AsExpression` (bind it in queries) and `FromSqlRow` (load it in models), as diesel
        // derives them; `foreign_derive` puts them on the type itself.
        const _: () = {
            #[derive(diesel::AsExpression, diesel::FromSqlRow)]
            #[diesel(foreign_derive, sql_type = Text)]
            #[allow(dead_code)]
            struct Column($t);
        };

        impl<DB: Backend> ToSql<Text, DB> for $t
        where
            str: ToSql<Text, DB>,
        {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
                <str as ToSql<Text, DB>>::to_sql(self.as_str(), out)
            }
        }

        impl<DB: Backend> FromSql<Text, DB> for $t
        where
            String: FromSql<Text, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
                let word = <String as FromSql<Text, DB>>::from_sql(bytes)?;
                $t::parse(&word).ok_or_else(|| format!("{word:?} is not a {}", stringify!($t)).into())
            }
        }
    )+ };
}

stored_as_text!(
    AlertCode,
    Audience,
    BillCaseKind,
    BillCaseStatus,
    CabinetEventKind,
    CabinetStatus,
    CaseKind,
    CaseStatus,
    Channel,
    CommandStatus,
    DownKind,
    EntryKind,
    EventOutcome,
    FindingKind,
    Job,
    LaneStatus,
    Liveness,
    OrderStatus,
    Outcome,
    OutboxStatus,
    PaymentState,
    ReadingKind,
    RefundStatus,
    Resolution,
    Role,
    RunStatus,
    SessionKind,
    Severity,
    StockReason,
    TaskStatus,
    Unreadable,
);

/// Store a number newtype as its number: `$t(pub $inner)` in a `$sql` column.
macro_rules! stored_as_number {
    ($t:ident($inner:ty) in $sql:ty) => {
        const _: () = {
            #[derive(diesel::AsExpression, diesel::FromSqlRow)]
            #[diesel(foreign_derive, sql_type = $sql)]
            #[allow(dead_code)]
            struct Column($t);
        };

        impl<DB: Backend> ToSql<$sql, DB> for $t
        where
            $inner: ToSql<$sql, DB>,
        {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
                <$inner as ToSql<$sql, DB>>::to_sql(&self.0, out)
            }
        }

        impl<DB: Backend> FromSql<$sql, DB> for $t
        where
            $inner: FromSql<$sql, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
                <$inner as FromSql<$sql, DB>>::from_sql(bytes).map($t)
            }
        }
    };
}

stored_as_number!(Fen(i64) in BigInt);
stored_as_number!(Grams(f64) in Double);
