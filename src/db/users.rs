//! Shoppers and their accounts. A user and their account are created together, in one
//! transaction: there is never a user without an account or an account without a user.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::{Account, NewUser, User};
use super::schema::{accounts, debt_ledger, users};
use super::{AnyConnection, DbResult, write_tx};
use crate::domain::account;
use crate::domain::payment::Channel;
use crate::domain::units::Fen;

/// What a login found.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: User,
    pub account: Account,
    /// True when this login created the user.
    pub created: bool,
}

pub fn find(conn: &mut AnyConnection, id: i64) -> DbResult<Option<(User, Account)>> {
    Ok(users::table
        .inner_join(accounts::table)
        .filter(users::id.eq(id))
        .select((User::as_select(), Account::as_select()))
        .first(conn)
        .optional()?)
}

fn find_by_uid(conn: &mut AnyConnection, channel: Channel, uid: &str) -> DbResult<Option<User>> {
    Ok(users::table
        .filter(users::channel.eq(channel))
        .filter(users::platform_uid.eq(uid))
        .select(User::as_select())
        .first(conn)
        .optional()?)
}

/// Find the shopper `uid` of `channel`, or create them with their account; bind `bind_channel`
/// and note the login. One transaction: a failure anywhere leaves nothing behind.
pub fn login(
    conn: &mut AnyConnection,
    channel: Channel,
    uid: &str,
    unionid: Option<&str>,
    bind_channel: &str,
    now: NaiveDateTime,
) -> DbResult<Login> {
    write_tx(conn, |conn| {
        let (user, created) = match find_by_uid(conn, channel, uid)? {
            Some(user) => (user, false),
            None => {
                // Two first logins of one shopper at once: the loser's insert hits the unique
                // key, and its savepoint lets it read the winner's row instead.
                let inserted = write_tx(conn, |conn| -> DbResult<User> {
                    let new = NewUser { channel, platform_uid: uid, unionid, created_at: now, last_login_at: now };
                    let user = on_backend_insert_user(conn, &new)?;
                    diesel::insert_into(accounts::table)
                        .values(Account {
                            user_id: user.id,
                            channels: String::new(),
                            debt_fen: Fen::ZERO,
                            blocked: false,
                            blocked_reason: None,
                            created_at: now,
                            updated_at: now,
                        })
                        .execute(conn)?;
                    Ok(user)
                });
                match inserted {
                    Ok(user) => (user, true),
                    Err(e) if e.is_unique_violation() => match find_by_uid(conn, channel, uid)? {
                        Some(user) => (user, false),
                        None => return Err(e),
                    },
                    Err(e) => return Err(e),
                }
            }
        };
        diesel::update(users::table.find(user.id))
            .set((users::last_login_at.eq(now), unionid.map(|u| users::unionid.eq(u.to_string()))))
            .execute(conn)?;
        let current: String = accounts::table.find(user.id).select(accounts::channels).first(conn)?;
        let bound = account::bind(&current, bind_channel);
        if bound != current {
            diesel::update(accounts::table.find(user.id))
                .set((accounts::channels.eq(&bound), accounts::updated_at.eq(now)))
                .execute(conn)?;
        }
        let (user, account) = find(conn, user.id)?.ok_or(diesel::result::Error::NotFound)?;
        Ok(Login { user, account, created })
    })
}

fn on_backend_insert_user(conn: &mut AnyConnection, new: &NewUser<'_>) -> DbResult<User> {
    Ok(crate::on_backend!(conn, |c| {
        diesel::insert_into(users::table).values(new).returning(User::as_returning()).get_result(c)?
    }))
}

/// Add `fen` (negative: take it off) to what the shopper owes because of `order_id`, and keep
/// the change in the debt ledger.
pub fn add_debt(conn: &mut AnyConnection, user_id: i64, order_id: i64, fen: Fen, now: NaiveDateTime) -> DbResult<()> {
    if fen == Fen(0) {
        return Ok(());
    }
    diesel::update(accounts::table.find(user_id))
        .set((accounts::debt_fen.eq(accounts::debt_fen + fen), accounts::updated_at.eq(now)))
        .execute(conn)?;
    diesel::insert_into(debt_ledger::table)
        .values((
            debt_ledger::user_id.eq(user_id),
            debt_ledger::order_id.eq(order_id),
            debt_ledger::delta_fen.eq(fen),
            debt_ledger::at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// A shopper's account.
pub fn account(conn: &mut AnyConnection, user_id: i64) -> DbResult<Option<Account>> {
    Ok(accounts::table.find(user_id).select(Account::as_select()).first(conn).optional()?)
}
