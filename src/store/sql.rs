//! Statements built at run time (`IN (...)` lists, multi-row INSERTs, optional filters) for
//! either backend.
//!
//! PostgreSQL requires numbered placeholders (`$1`, `$2` ...). SQLite reads `$N` too, but as a
//! *named* parameter: it keeps the names in a list that it searches linearly, once per name
//! while preparing and once per value while sqlx binds (`sqlite3_bind_parameter_name`), so a
//! multi-row INSERT of 2,000 values cost millions of string comparisons: 14 % of a mixed
//! backlog's CPU time (`perf record`, 2026-11-30). On SQLite this builder therefore writes
//! anonymous `?` placeholders, which are numbered by position, exactly as it binds. sqlx's own
//! `QueryBuilder` cannot know the backend through the `Any` driver (it always writes `?`, which
//! PostgreSQL rejects); this builder is told it and otherwise mirrors that API.

use std::fmt::Write;

use sqlx::any::AnyArguments;
use sqlx::query::{Query, QueryAs};
use sqlx::{Any, Arguments, Encode, FromRow, Type};

use super::Backend;

pub(crate) struct SqlBuilder<'a> {
    text: String,
    args: AnyArguments<'a>,
    count: usize,
    backend: Backend,
}

impl<'a> SqlBuilder<'a> {
    pub fn new(backend: Backend, text: impl Into<String>) -> SqlBuilder<'a> {
        SqlBuilder {
            text: text.into(),
            args: AnyArguments::default(),
            count: 0,
            backend,
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends the next placeholder (`$N`, or `?` on SQLite) and binds `value` to it.
    pub fn push_bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'a + Encode<'a, Any> + Type<Any>,
    {
        self.count += 1;
        match self.backend {
            Backend::Postgres => {
                let _ = write!(self.text, "${}", self.count);
            }
            Backend::Sqlite => self.text.push('?'),
        }
        // Encoding into the Any buffer only fails for types it has no variant for, which the
        // store never binds; the statement then fails with a count mismatch, not silently.
        let _ = self.args.add(value);
        self
    }

    /// `v1, v2, ...`: the placeholders of an `IN (...)` list.
    pub fn push_list<T, I>(&mut self, values: I) -> &mut Self
    where
        I: IntoIterator<Item = T>,
        T: 'a + Encode<'a, Any> + Type<Any>,
    {
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.push_bind(value);
        }
        self
    }

    /// `VALUES (..), (..)`: `row` binds one item's columns through [`Values::push_bind`].
    pub fn push_values<T, I, F>(&mut self, items: I, mut row: F) -> &mut Self
    where
        I: IntoIterator<Item = T>,
        F: FnMut(Values<'_, 'a>, T),
    {
        self.push("VALUES ");
        for (i, item) in items.into_iter().enumerate() {
            self.push(if i > 0 { ", (" } else { "(" });
            row(
                Values {
                    sql: self,
                    first: true,
                },
                item,
            );
            self.push(")");
        }
        self
    }

    #[cfg(test)]
    pub fn sql(&self) -> &str {
        &self.text
    }

    /// The statement with its bound values; the builder is left without arguments.
    pub fn build(&mut self) -> Query<'_, Any, AnyArguments<'_>> {
        let args = std::mem::take(&mut self.args);
        sqlx::query_with(&self.text, args)
    }

    pub fn build_query_as<O>(&mut self) -> QueryAs<'_, Any, O, AnyArguments<'_>>
    where
        O: for<'r> FromRow<'r, sqlx::any::AnyRow>,
    {
        let args = std::mem::take(&mut self.args);
        sqlx::query_as_with(&self.text, args)
    }
}

/// One row of [`SqlBuilder::push_values`]: values separated by commas.
pub(crate) struct Values<'s, 'a> {
    sql: &'s mut SqlBuilder<'a>,
    first: bool,
}

impl<'a> Values<'_, 'a> {
    pub fn push_bind<T>(mut self, value: T) -> Self
    where
        T: 'a + Encode<'a, Any> + Type<Any>,
    {
        if !self.first {
            self.sql.push(", ");
        }
        self.first = false;
        self.sql.push_bind(value);
        self
    }

    /// A value given in its text form for a column of `sql_type` (`CAST($n AS tsvector)`):
    /// the `Any` driver binds text as text, which PostgreSQL does not convert by itself.
    pub fn push_bind_as<T>(mut self, value: T, sql_type: &str) -> Self
    where
        T: 'a + Encode<'a, Any> + Type<Any>,
    {
        if !self.first {
            self.sql.push(", ");
        }
        self.first = false;
        self.sql.push("CAST(").push_bind(value).push(" AS ");
        self.sql.push(sql_type).push(")");
        self
    }
}

/// Bound parameters per `IN (...)` list or multi-row insert, well below SQLite's limit.
pub(super) const IN_CHUNK: usize = 500;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order_on_postgres() {
        let mut q = SqlBuilder::new(Backend::Postgres, "SELECT 1 FROM t WHERE a = ");
        q.push_bind("x").push(" AND b IN (");
        q.push_list([1i64, 2, 3]).push(")");
        assert_eq!(
            q.sql(),
            "SELECT 1 FROM t WHERE a = $1 AND b IN ($2, $3, $4)"
        );
    }

    #[test]
    fn placeholders_are_positional_on_sqlite() {
        let mut q = SqlBuilder::new(Backend::Sqlite, "SELECT 1 FROM t WHERE a = ");
        q.push_bind("x").push(" AND b IN (");
        q.push_list([1i64, 2, 3]).push(")");
        assert_eq!(q.sql(), "SELECT 1 FROM t WHERE a = ? AND b IN (?, ?, ?)");
    }

    #[test]
    fn values_rows_are_parenthesised_and_separated() {
        let mut q = SqlBuilder::new(Backend::Postgres, "INSERT INTO t (a, b) ");
        q.push_values([(1i64, "x"), (2, "y")], |b, (n, s)| {
            b.push_bind(n).push_bind(s);
        });
        assert_eq!(q.sql(), "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)");
    }
}
