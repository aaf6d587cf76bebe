//! The values a query binds. One small closed set that both PostgreSQL and
//! SQLite store, so the same query runs on either; a `None` keeps its type,
//! so PostgreSQL sees a typed NULL.

use sqlx::any::Any;
use sqlx::query::Query;

/// One bound parameter.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Value {
    /// `BOOLEAN` (an integer 0/1 on SQLite).
    Bool(Option<bool>),
    /// `INTEGER` (32 bits on PostgreSQL).
    I32(Option<i32>),
    /// `BIGINT`.
    I64(Option<i64>),
    /// `DOUBLE PRECISION` / `REAL`.
    F64(Option<f64>),
    /// `TEXT`.
    Text(Option<String>),
    /// `BYTEA` / `BLOB`.
    Bytes(Option<Vec<u8>>),
}

impl Value {
    pub(crate) fn bind<'q>(
        &self,
        q: Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    ) -> Query<'q, Any, sqlx::any::AnyArguments<'q>> {
        match self.clone() {
            Value::Bool(v) => q.bind(v),
            Value::I32(v) => q.bind(v),
            Value::I64(v) => q.bind(v),
            Value::F64(v) => q.bind(v),
            Value::Text(v) => q.bind(v),
            Value::Bytes(v) => q.bind(v),
        }
    }
}

macro_rules! from {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::$variant(Some(v.into()))
            }
        }
        impl From<Option<$t>> for Value {
            fn from(v: Option<$t>) -> Value {
                Value::$variant(v.map(Into::into))
            }
        }
    )*};
}

from! {
    bool => Bool,
    i16 => I32,
    i32 => I32,
    u32 => I64,
    i64 => I64,
    f32 => F64,
    f64 => F64,
    String => Text,
    &str => Text,
    Vec<u8> => Bytes,
    &[u8] => Bytes,
}
