//! The PromQL that alert rules are written in: Prometheus's own, parsed by
//! the `promql-parser` crate, plus one botfleet function:
//!
//! - `anomalous(v instant-vector, floor scalar, direction string)`: the
//!   elements of `v` whose value is an anomaly against that element's own
//!   history (an EWMA z-score checked by a MAD modified z-score, after a
//!   warm-up, by at least `floor`, `"up"`, `"down"` or `"both"` ways, three
//!   evaluations in a row). It keeps state between evaluations, so it means
//!   something in a rule only.
//!
//! The fleet file and rule files are checked with [`parse`], and the
//! monitor evaluates what it returns.

use std::sync::Once;

pub use promql_parser::parser::Expr;
use promql_parser::parser::{Function, value::ValueType};

/// The name of botfleet's anomaly function.
pub const ANOMALOUS: &str = "anomalous";

/// Parses `text` as a PromQL expression, botfleet's functions included.
pub fn parse(text: &str) -> Result<Expr, String> {
    static EXTRA: Once = Once::new();
    EXTRA.call_once(|| {
        // Only fails on a clash with a built-in name, which `anomalous` is not.
        let _ = promql_parser::parser::register_extra_functions(vec![Function::new(
            ANOMALOUS,
            vec![ValueType::Vector, ValueType::Scalar, ValueType::String],
            0,
            ValueType::Vector,
            false,
        )]);
    });
    promql_parser::parser::parse(text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn prometheus_expressions_and_anomalous_parse_and_nonsense_does_not() {
        assert!(super::parse("rate(botfleet_updates_total[5m]) > 1").is_ok());
        assert!(super::parse(r#"anomalous(sum by (bot) (rate(x[1m])), 1, "up")"#).is_ok());
        assert!(super::parse("anomalous(x)").is_err());
        assert!(super::parse("rate(x) >").is_err());
    }
}
